#!/usr/bin/env node
// npm install hook: use a prebuilt binary when one loads (prebuilds/<platform>-<arch>/),
// otherwise build from source with cmake-js. node-gyp-build's own fallback would run
// node-gyp, which has no binding.gyp to work from here.
'use strict';
const path = require('node:path');
const root = path.resolve(__dirname, '..');
try {
  require('node-gyp-build')(root);
  process.exit(0);
} catch (e) {
  // no usable prebuild or earlier build: build below
}
require('./build-native.cjs');
