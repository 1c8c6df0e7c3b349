// `npm test`: builds the library (tsc), checks that the bundle the center serves matches a
// fresh build, then runs every test file with Node's own runner: unit tests, the SSE
// transport against a stand-in room, the integration tests against the real binary (Node
// and headless Chromium) and the package test (pack, install, import).
// The binary: LONGLINK_PUSH_BIN, or <CARGO_TARGET_DIR or ../../target>/debug/longlink-push.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
run(process.execPath, ['scripts/bundle.mjs', '--check']);

const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (entry.name.endsWith('.test.mjs')) files.push(path);
  }
};
walk('test');
const only = process.argv.slice(2);
const selected = only.length > 0 ? files.filter((f) => only.some((o) => f.includes(o))) : files;

// Node 20 has a WebSocket only behind this flag; later versions have it anyway.
const flags = typeof globalThis.WebSocket === 'undefined' ? ['--experimental-websocket'] : [];
run(process.execPath, [...flags, '--test', '--test-reporter=spec', ...selected]);
