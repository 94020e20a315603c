// The fault drills' algorithm: writes result files whose bytes follow from the task's config and
// the run's id, so the test can compute every file's sha256 without trusting anything in between.
// Plain Node, no dependencies. Config: { seed, sleepMs?, files: [{ name, bytes }] }.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const runId = process.env.PHT_RUN_ID;
const CHUNK = 1024 * 1024;

/**
 * AES-128-CTR keystream keyed by (seed, run id, file name): never repeats within a file, so a chunk
 * that is lost, doubled or taken from another run changes the checksum. Same as drillBytes() in
 * drill-harness.ts.
 */
function writeFile(name, bytes) {
  const key = crypto.createHash('sha256').update(`${config.seed}/${runId}/${name}`).digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const fd = fs.openSync(path.join(process.env.PHT_OUTPUT_DIR, name), 'w');
  for (let left = bytes; left > 0; left -= CHUNK) fs.writeSync(fd, cipher.update(Buffer.alloc(Math.min(CHUNK, left))));
  fs.closeSync(fd);
}

setTimeout(() => {
  for (const file of config.files) writeFile(file.name, file.bytes);
  console.log(`drill run ${runId} wrote ${config.files.length} file(s)`);
}, config.sleepMs ?? 0);
