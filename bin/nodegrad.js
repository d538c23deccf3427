#!/usr/bin/env node
// The `nodegrad` command; the implementation lives in dist/cli.js (built from lib/cli.ts).
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
