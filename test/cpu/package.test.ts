// The install story end to end: pack the package as `npm publish` would, install the
// tarball into an empty project with install scripts off and no network (the prebuilt
// binary must be enough), then import it from plain Node and run a tensor op.
//
// The package is packed from a staging copy of the checkout (temp dir, node_modules
// linked), so packing, `prepare` (tsc) and the prebuild step never write into the repo.
// The staging copy also carries a build/ directory on purpose: the tarball must not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; version: string };
const platformDir = `${process.platform}-${process.arch}`;
const prebuildPath = `prebuilds/${platformDir}/nodegrad.napi.node`;
const LONG = 300_000;

let work = '';          // temp root: staging/, pack/, consumer/
let tarball = '';
let entries: string[] = [];

/** Environment for child processes: no addon override, no inherited npm lifecycle state. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODEGRAD_ADDON' || k.startsWith('npm_') || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return env;
}

function run(cmd: string, args: string[], cwd: string, timeout = LONG, env = childEnv()): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
}

function explain(r: SpawnSyncReturns<string>, what: string): string {
  const why = r.error ? r.error.message : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}`;
  return `${what} failed: ${why}\n--- stdout\n${(r.stdout ?? '').slice(-4000)}\n--- stderr\n${(r.stderr ?? '').slice(-4000)}`;
}

function mustRun(cmd: string, args: string[], cwd: string, what: string, timeout = LONG): SpawnSyncReturns<string> {
  const r = run(cmd, args, cwd, timeout);
  if (r.status !== 0) throw new Error(explain(r, what));
  return r;
}

/** The binary to ship: NODEGRAD_ADDON, else the local build, else an existing prebuild, else a fresh CPU build. */
function findBinary(): string {
  const candidates = [
    process.env.NODEGRAD_ADDON ? path.resolve(root, process.env.NODEGRAD_ADDON) : '',
    path.join(root, 'build', 'Release', 'nodegrad.node'),
    path.join(root, prebuildPath),
  ].filter(Boolean);
  for (const c of candidates) if (fs.existsSync(c)) return c;
  const out = path.join(work, 'native-build');
  const env = { ...childEnv(), NODEGRAD_BUILD_DIR: out };
  const r = run(process.execPath, [path.join(root, 'scripts', 'build-native.cjs'), '--cpu-only'], root, LONG, env);
  const built = path.join(out, 'Release', 'nodegrad.node');
  if (r.status !== 0 || !fs.existsSync(built)) throw new Error(explain(r, 'building the native addon'));
  return built;
}

/**
 * Copies the checkout as a clean clone would have it (tracked and untracked-but-not-ignored
 * files, so no build outputs, dist/ or prebuilds/) and links node_modules.
 */
function stage(dest: string): void {
  const git = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], root, 60_000);
  let files: string[];
  if (git.status === 0) {
    files = git.stdout.split('\0').filter((f) => f && fs.existsSync(path.join(root, f)));
  } else {    // not a git checkout: everything but the usual outputs
    const skip = /^(\.git|node_modules|dist|prebuilds|build[^/]*|bench\/results)(\/|$)|\.tgz$/;
    files = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => !skip.test(f) && fs.statSync(path.join(root, f)).isFile());
  }
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dest, f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(dest, f));
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dest, 'node_modules'), 'dir');
}

function listTarball(file: string): string[] {
  const r = mustRun('tar', ['-tzf', file], path.dirname(file), 'listing the tarball', 60_000);
  return r.stdout.split('\n').filter(Boolean).map((e) => e.replace(/^package\//, ''));
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodegrad-pack-'));
  const staging = path.join(work, 'staging');
  stage(staging);
  // A build tree like a developer's: prebuilds.cjs copies it, and `files` must keep it out.
  fs.mkdirSync(path.join(staging, 'build', 'Release'), { recursive: true });
  fs.copyFileSync(findBinary(), path.join(staging, 'build', 'Release', 'nodegrad.node'));
  mustRun(process.execPath, [path.join(staging, 'scripts', 'prebuilds.cjs'), '--no-build'], staging, 'scripts/prebuilds.cjs --no-build');

  const packDir = path.join(work, 'pack');
  fs.mkdirSync(packDir);
  // `npm pack` runs `prepare` (tsc), so dist/ is compiled from the staged sources.
  mustRun('npm', ['pack', '--pack-destination', packDir, '--no-audit', '--no-fund'], staging, 'npm pack');
  const tgz = fs.readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
  if (tgz.length !== 1) throw new Error(`npm pack wrote ${tgz.length} tarballs in ${packDir}: ${tgz.join(', ')}`);
  tarball = path.join(packDir, tgz[0]);
  entries = listTarball(tarball);
}, LONG);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('npm package', () => {
  it('tarball holds the prebuilt binary, the compiled ESM and its types, and no build tree', () => {
    expect(path.basename(tarball)).toBe(`${pkg.name}-${pkg.version}.tgz`);
    for (const f of [prebuildPath, 'dist/index.js', 'dist/index.d.ts', 'package.json', 'scripts/install.cjs']) {
      expect(entries, `tarball entry ${f}`).toContain(f);
    }
    expect(entries.filter((e) => e.startsWith('build/') || e.startsWith('build-'))).toEqual([]);
    expect(entries.filter((e) => e.startsWith('node_modules/') || e.startsWith('test/'))).toEqual([]);
  });

  describe('installed into an empty project with scripts off', () => {
    const consumer = (): string => path.join(work, 'consumer');
    const installed = (): string => path.join(consumer(), 'node_modules', pkg.name);

    beforeAll(() => {
      fs.mkdirSync(consumer());
      fs.writeFileSync(path.join(consumer(), 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
      const flags = ['install', tarball, '--ignore-scripts', '--no-audit', '--no-fund'];
      let r = run('npm', [...flags, '--offline'], consumer());
      // --offline needs every dependency in the npm cache; the registry may fill the gaps.
      if (r.status !== 0) r = run('npm', [...flags, '--prefer-offline'], consumer());
      if (r.status !== 0) throw new Error(explain(r, 'npm install of the packed tarball'));
    }, LONG);

    it('has the prebuilt binary and its loader dependency in place', () => {
      expect(fs.existsSync(path.join(installed(), prebuildPath))).toBe(true);
      expect(fs.existsSync(path.join(installed(), 'build'))).toBe(false);
      expect(fs.existsSync(path.join(consumer(), 'node_modules', 'node-gyp-build', 'package.json'))).toBe(true);
    });

    it('loads from plain Node and computes a sum', () => {
      const script = "import('nodegrad').then(ng => { const t = ng.tensor([1,2,3]); " +
        'console.log(JSON.stringify({sum: t.sum().item(), info: ng.info().version})) })';
      const r = run(process.execPath, ['-e', script], consumer(), 60_000);
      if (r.status !== 0) throw new Error(explain(r, 'importing the installed package'));
      const line = r.stdout.trim().split('\n').pop() ?? '';
      expect(JSON.parse(line)).toEqual({ sum: 6, info: pkg.version });
    });

    it('install hook takes the prebuilt binary instead of compiling', () => {
      // PATH holds node alone, so a fallback to compiling fails at once instead of building.
      const bin = path.join(work, 'node-only-bin');
      fs.mkdirSync(bin, { recursive: true });
      if (!fs.existsSync(path.join(bin, 'node'))) fs.symlinkSync(process.execPath, path.join(bin, 'node'));
      const env = { ...childEnv(), PATH: bin, NODEGRAD_CUDA: '0' };
      const r = run(process.execPath, [path.join(installed(), 'scripts', 'install.cjs')], installed(), 60_000, env);
      if (r.status !== 0) throw new Error(explain(r, 'scripts/install.cjs'));
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/building the native addon/);
      expect(fs.existsSync(path.join(installed(), 'build'))).toBe(false);
    });

    it('type-checks a consumer that imports it', () => {
      fs.writeFileSync(path.join(consumer(), 'main.ts'),
        "import * as ng from 'nodegrad';\nconst t: ng.Tensor = ng.tensor([1, 2, 3]);\nconst s: number = t.sum().item();\nconsole.log(s);\n");
      fs.writeFileSync(path.join(consumer(), 'tsconfig.json'), JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true,
          skipLibCheck: true, types: ['node'], typeRoots: [path.join(root, 'node_modules', '@types')] },
        files: ['main.ts'],
      }));
      const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
      const r = run(process.execPath, [tsc, '-p', 'tsconfig.json'], consumer(), 120_000);
      if (r.status !== 0) throw new Error(explain(r, 'tsc on a consumer of the package'));
    });
  });
});
