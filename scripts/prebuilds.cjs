#!/usr/bin/env node
// Builds the addon and copies it where node-gyp-build looks for prebuilt binaries:
// prebuilds/<platform>-<arch>/nodegrad.napi.node (N-API, so one binary serves every
// Node version). prebuildify has no cmake-js backend, so this does its job directly.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
if (!process.argv.includes('--no-build')) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'build-native.cjs'), '--release', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status || 1);
}
const built = path.join(root, 'build', 'Release', 'nodegrad.node');
if (!fs.existsSync(built)) { console.error(`nodegrad: ${built} not found`); process.exit(1); }
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const dest = path.join(dir, 'nodegrad.napi.node');
fs.copyFileSync(built, dest);
console.log(`nodegrad: wrote ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1e6).toFixed(1)} MB)`);
