// A test algorithm for sealed runs: it writes its config's marker into its log, its progress and
// its result files (one small, one spanning several encryption chunks). It never sees a key.
const fs = require('node:fs');
const path = require('node:path');

const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const out = process.env.PHT_OUTPUT_DIR;
const marker = String(config.marker);
console.log(`log line with ${marker}-LOG`);
fs.appendFileSync(
  process.env.PHT_PROGRESS_FILE,
  JSON.stringify({ current: 1, total: 1, message: `${marker}-PROGRESS` }) + '\n',
);
fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify({ marker: `${marker}-RESULT`, config }));
fs.writeFileSync(path.join(out, 'big.txt'), `${marker}-BIG\n`.repeat(20000));
