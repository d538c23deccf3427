// Runs a snippet of ES module source in a fresh Node process with the TypeScript loader:
// for what one test process cannot show (environment read at load time, finalizers and
// the collector with --expose-gc). Imports nothing from lib, so a test file that sets an
// environment variable before loading lib can use it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const loader = fileURLToPath(new URL('../scripts/ts-loader.mjs', import.meta.url));

/** The file URL of a module under lib/ (e.g. 'index.ts'), for an import in the snippet. */
export function libModule(file: string): string {
  return new URL(`../lib/${file}`, import.meta.url).href;
}

/**
 * Runs `src` (which ends by printing one JSON line) and returns what it wrote to stderr and
 * that last stdout line parsed (null when there is none).
 */
export function runModule<T>(src: string, opts: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): { stderr: string; out: T | null } {
  const r = spawnSync(process.execPath, [...(opts.nodeArgs ?? []), '--import', loader, '--input-type=module', '-e', src],
    { encoding: 'utf8', env: opts.env ?? process.env });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  return { stderr: r.stderr, out: last.startsWith('{') ? (JSON.parse(last) as T) : null };
}
