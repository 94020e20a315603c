import { buildAndPushImage, requireInfrastructure } from '../../test/helpers/docker.js';

/**
 * The one algorithm image of the benchmarks. Its task config says what to do:
 * `{ sleepMs?: number, bytes?: number }`: sleep, write `bytes` zeros to data.bin in 1 MiB chunks,
 * then a tiny result.json. `{}` is the trivial task (start node, write one small file, exit).
 */
const WORKLOAD = `
const fs = require('fs');
const path = require('path');
const text = fs.readFileSync(process.env.PHT_CONFIG_FILE || '/pht/input/config.json', 'utf8');
const cfg = (text && JSON.parse(text)) || {};
const out = process.env.PHT_OUTPUT_DIR || '/pht/output';
function finish() {
  const bytes = Number(cfg.bytes || 0);
  if (bytes > 0) {
    const fd = fs.openSync(path.join(out, 'data.bin'), 'w');
    const chunk = Buffer.alloc(1 << 20);
    for (let left = bytes; left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, left));
    fs.closeSync(fd);
  }
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify({ ok: true }) + '\\n');
}
const sleepMs = Number(cfg.sleepMs || 0);
if (sleepMs > 0) setTimeout(finish, sleepMs);
else finish();
`;

/** Checks Docker and the image registry, builds and pushes the workload image; returns its digest reference. */
export async function workloadImage(): Promise<string> {
  await requireInfrastructure();
  return buildAndPushImage(
    'pht-bench/workload:1',
    { 'main.js': WORKLOAD },
    { cmd: ['/app/main.js'], labels: { 'org.pht.bench': 'workload' } },
  );
}
