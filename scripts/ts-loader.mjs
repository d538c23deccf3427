// Runs TypeScript sources directly, without a build step:
//   node --import ./scripts/ts-loader.mjs bench/run.ts
// Node 20 cannot strip types, so this registers module hooks that
//  - resolve a relative `./x.js` import to `./x.ts` when only the .ts file exists
//    (the NodeNext convention the sources are written in), and
//  - transpile `.ts` files (types erased, nothing type-checked) with the oxc transform that
//    vitest's rolldown ships, or with the `typescript` package if that is absent.
import { register } from 'node:module';

// The same file serves as the hooks module; the `?hooks` query tells the two roles apart.
if (new URL(import.meta.url).search !== '?hooks') register(`${import.meta.url}?hooks`);

// ---- hooks (run on the loader thread) ----------------------------------------------------
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

let transpile = null;

function makeTranspiler() {
  const require = createRequire(import.meta.url);
  try {
    // oxc (shipped with vitest's rolldown): about 20x faster than typescript's transpileModule
    const { transformSync } = require('rolldown/experimental');
    return (source, file) => {
      const r = transformSync(file, source, { lang: 'ts', sourcemap: true });
      if (r.errors && r.errors.length) throw new Error(`ts-loader: ${file}: ${r.errors.map((e) => e.message).join('; ')}`);
      const map = r.map ? `\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(r.map)).toString('base64')}` : '';
      return r.code + map;
    };
  } catch {
    const ts = require('typescript');
    const compilerOptions = {
      module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true,
      isolatedModules: true, useDefineForClassFields: true,
    };
    return (source, file) => ts.transpileModule(source, { compilerOptions, fileName: file }).outputText;
  }
}

export async function resolve(specifier, context, next) {
  const relative = specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('file:');
  if (relative && specifier.endsWith('.js') && context.parentURL) {
    const url = new URL(specifier, context.parentURL);
    if (url.protocol === 'file:' && !existsSync(fileURLToPath(url))) {
      const tsUrl = new URL(url.href.replace(/\.js$/, '.ts'));
      if (existsSync(fileURLToPath(tsUrl))) return { url: tsUrl.href, format: 'module', shortCircuit: true };
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.startsWith('file:') && (url.endsWith('.ts') || url.endsWith('.mts')) && !url.endsWith('.d.ts')) {
    const file = fileURLToPath(url);
    transpile ??= makeTranspiler();
    return { format: 'module', source: transpile(readFileSync(file, 'utf8'), file), shortCircuit: true };
  }
  return next(url, context);
}
