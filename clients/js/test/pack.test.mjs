// The package as npm publishes it: `npm pack`, installed into an empty project, imported
// by its name, with its type declarations and nothing but dist/, the README and the manifest.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('npm pack makes a package that installs into an empty project and imports by name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'longlink-js-pack-'));
  try {
    const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], root));
    const files = packed.files.map((f) => f.path).sort();
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts'), files.join(' '));
    assert.ok(files.includes('README.md') && files.includes('package.json'));
    assert.deepEqual(files.filter((f) => !f.startsWith('dist/') && f !== 'README.md' && f !== 'package.json'), []);
    const project = join(dir, 'app');
    execFileSync('mkdir', [project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', '--offline', '--no-audit', '--no-fund', join(dir, packed.filename)], project);
    assert.ok(existsSync(join(project, 'node_modules/@longlink/push-client/dist/index.d.ts')));
    writeFileSync(
      join(project, 'check.mjs'),
      `import { connect, PushClient, encodeFrame, decodeFrame } from '@longlink/push-client';
const frame = encodeFrame(7, { op: 'heartbeat' });
const [{ seq, message }] = decodeFrame(frame);
console.log(JSON.stringify({ connect: typeof connect, client: typeof PushClient, seq, op: message.op }));`,
    );
    const out = execFileSync(process.execPath, ['check.mjs'], { cwd: project, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { connect: 'function', client: 'function', seq: 7, op: 'heartbeat' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
