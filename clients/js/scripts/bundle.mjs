// Builds the single-file ESM bundle the center's web page serves
// (demo-push/src/center/push-client.js, committed so serving it needs no build step).
// `node scripts/bundle.mjs --check` fails when the committed file differs from a fresh build.

import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const out = fileURLToPath(new URL('../../../demo-push/src/center/push-client.js', import.meta.url));
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

const result = await build({
  entryPoints: [fileURLToPath(new URL('../src/index.ts', import.meta.url))],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  platform: 'neutral',
  minify: false,
  legalComments: 'none',
  charset: 'utf8',
  write: false,
  banner: {
    js: `// @longlink/push-client ${version}: the longlink-push client, one ESM file.\n// Generated from clients/js by \`npm run bundle\`; do not edit (scripts/test.sh checks it).`,
  },
});
const fresh = result.outputFiles[0].text;

if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(out, 'utf8');
  } catch {}
  if (committed !== fresh) {
    console.error(`${out} differs from a fresh build of clients/js: run \`npm run bundle\` in clients/js and commit it`);
    process.exit(1);
  }
  console.log(`${out} matches a fresh build`);
} else {
  writeFileSync(out, fresh);
  console.log(`wrote ${out} (${fresh.length} bytes)`);
}
