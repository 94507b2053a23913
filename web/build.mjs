// build.mjs bundles the console with esbuild into dist/ (committed, embedded
// in the gridwatch binary by web/embed.go) and records in dist/build.json
// the SHA-256 of every source file and of every output, so that a Go test
// (web/bundle_test.go) can tell, without Node, when the committed bundle no
// longer matches its source. `node build.mjs --out DIR` builds elsewhere: the
// rebuild test compares such a build with dist/ byte for byte.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const outFlag = process.argv.indexOf('--out');
const out = outFlag > 0 ? process.argv[outFlag + 1] : join(root, 'dist');

// sources are the files the build reads besides node_modules, whose exact
// versions package-lock.json pins. web/bundle_test.go lists them the same way.
function sources() {
  const files = ['build.mjs', 'package.json', 'package-lock.json'];
  const walk = (dir) => {
    for (const name of readdirSync(join(root, dir)).sort()) {
      const rel = dir + '/' + name;
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk('src');
  return files.sort();
}

// digest is the hash of a file list: sha256 over "path\0sha256(content)\n"
// of each file in order.
function digest(dir, files) {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f + '\0' + createHash('sha256').update(readFileSync(join(dir, f))).digest('hex') + '\n');
  }
  return h.digest('hex');
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
// The entry (app.js, app.css) holds the sign-in and the queues; the other
// views are chunks it imports when first shown (chunk-HASH.js).
const result = await build({
  entryPoints: { app: join(root, 'src/main.jsx') },
  metafile: true,
  bundle: true,
  splitting: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: join(out, 'assets'),
  chunkNames: 'chunk-[hash]',
  loader: { '.png': 'dataurl', '.svg': 'dataurl' },
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
});
// The page preloads the chunks app.js imports statically, which the
// browser would otherwise ask for only once it has read app.js.
const entry = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint && o.entryPoint.endsWith('src/main.jsx'))[1];
const preloads = entry.imports.filter((i) => i.kind === 'import-statement').map((i) => '<link rel="modulepreload" href="/assets/' + i.path.split('/').pop() + '">\n').join('');
const page = readFileSync(join(root, 'src/index.html'), 'utf8');
if (!page.includes('<script type="module" src="/assets/app.js"></script>')) throw new Error('src/index.html does not load /assets/app.js');
writeFileSync(join(out, 'index.html'), page.replace('<script type="module" src="/assets/app.js"></script>', preloads + '$&'));

const outputs = [];
const walkOut = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walkOut(p);
    else outputs.push(relative(out, p).split(sep).join('/'));
  }
};
walkOut(out);
outputs.sort();
const manifest = {
  note: 'Written by web/build.mjs; web/bundle_test.go checks it. Rebuild with: cd web && npm ci && npm run build',
  sources: digest(root, sources()),
  outputs: digest(out, outputs),
  files: outputs,
};
writeFileSync(join(out, 'build.json'), JSON.stringify(manifest, null, 2) + '\n');
