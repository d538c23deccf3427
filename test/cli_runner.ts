// Runs the `nodegrad` command from the TypeScript sources (no dist/ build needed), for
// tests that spawn the CLI: node --import ./scripts/ts-loader.mjs test/cli_runner.ts train ...
import { main } from '../lib/cli.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
