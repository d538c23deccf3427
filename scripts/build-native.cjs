#!/usr/bin/env node
// Builds the native addon with cmake-js (offline: headers come from node-api-headers).
// CUDA is compiled in when nvcc is found on PATH, in CUDACXX, or at /usr/local/cuda/bin,
// unless --cpu-only or NODEGRAD_CUDA=0. NODEGRAD_CUDA_ARCHS overrides the GPU targets
// (e.g. "90a-real" while iterating on an H100). NODEGRAD_BUILD_DIR builds elsewhere than build/.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const cpuOnly = args.includes('--cpu-only') || process.env.NODEGRAD_CUDA === '0';

function findNvcc() {
  if (process.env.CUDACXX && fs.existsSync(process.env.CUDACXX)) return process.env.CUDACXX;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir, 'nvcc');
    if (dir && fs.existsSync(p)) return p;
  }
  for (const p of ['/usr/local/cuda/bin/nvcc', '/opt/cuda/bin/nvcc']) if (fs.existsSync(p)) return p;
  return null;
}

// GPU targets: NODEGRAD_CUDA_ARCHS when set; every supported generation for --release
// (prebuilt binaries); otherwise the GPUs of this machine, and on a machine without one
// (CI, CPU servers) the oldest and newest code paths only (sm_75 SASS + sm_90 PTX), so
// every kernel is still compiled and checked without the cost of a release build.
const RELEASE_ARCHS = '75-real;80-real;86-real;89-real;90-real;90-virtual';
function cudaArchs() {
  if (process.env.NODEGRAD_CUDA_ARCHS) return process.env.NODEGRAD_CUDA_ARCHS === 'all' ? RELEASE_ARCHS : process.env.NODEGRAD_CUDA_ARCHS;
  if (args.includes('--release')) return RELEASE_ARCHS;
  const q = spawnSync('nvidia-smi', ['--query-gpu=compute_cap', '--format=csv,noheader'], { encoding: 'utf8' });
  const caps = q.status === 0 ? [...new Set(q.stdout.split('\n').map((l) => l.trim().replace('.', '')).filter((c) => /^\d+$/.test(c)))] : [];
  if (caps.length) return caps.map((c) => (c === '90' ? '90a-real;90-virtual' : `${c}-real`)).join(';');
  return '75-real;90-virtual';
}

const cmakeArgs = [];
const nvcc = cpuOnly ? null : findNvcc();
if (nvcc) {
  cmakeArgs.push(`--CDCMAKE_CUDA_COMPILER=${nvcc}`);
  cmakeArgs.push(`--CDCMAKE_CUDA_ARCHITECTURES=${cudaArchs()}`);
} else {
  cmakeArgs.push('--CDNODEGRAD_CUDA=OFF');
}
const useNinja = spawnSync('ninja', ['--version'], { stdio: 'ignore' }).status === 0;
if (useNinja) cmakeArgs.push('-G', 'Ninja');

const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(os.cpus().length) };
console.log(`nodegrad: building the native addon (${nvcc ? `CUDA via ${nvcc} for ${cudaArchs()}` : 'CPU only'})`);
const outDir = process.env.NODEGRAD_BUILD_DIR || 'build';
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', outDir, ...cmakeArgs], { cwd: root, stdio: 'inherit', env });
if (r.status !== 0) {
  console.error('nodegrad: native build failed. It needs cmake (>= 3.18) and a C++17 compiler; CUDA is optional.');
  process.exit(r.status || 1);
}
