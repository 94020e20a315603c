'use strict';
/**
 * pooled-quantiles: the exact median and quartiles of age over every site's patients, which
 * summary statistics cannot give, computed at a trusted third party (TTP).
 *
 * Two modes, chosen by the config:
 *   {"mode": "send"}  at each data site: the site's ages go into $PHT_TTP_OUTBOX (the site client
 *                     seals them for the TTP and sends them to its file service, never to the
 *                     registry); the researcher only gets how many were sent.
 *   {"mode": "pool", "ttpInbox": {"taskId": N}}  at the TTP: the site client puts the opened files
 *                     of task N in ttpInbox.files; the result is n, q1, median and q3 (linear
 *                     interpolation between order statistics, R's type 7).
 */
const fs = require('node:fs');
const path = require('node:path');
const { selectQuery, termToNumber } = require('./sparql-results.js');

const QUERY = `
PREFIX pht: <https://w3id.org/pht/demo#>
SELECT ?age WHERE { ?patient a pht:Patient ; pht:age ?age }`;

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
  const out = process.env.PHT_OUTPUT_DIR;
  if (config.mode === 'send') {
    const { rows } = await selectQuery(process.env.SPARQL_ENDPOINT, QUERY);
    const ages = rows.map((row) => termToNumber(row.age)).filter((a) => Number.isFinite(a));
    fs.mkdirSync(process.env.PHT_TTP_OUTBOX, { recursive: true });
    fs.writeFileSync(path.join(process.env.PHT_TTP_OUTBOX, 'ages.json'), JSON.stringify(ages));
    fs.writeFileSync(
      path.join(out, 'result.json'),
      JSON.stringify({ algorithm: 'pooled-quantiles', sent: ages.length }),
    );
    console.log(`sent ${ages.length} ages to the TTP`);
    return;
  }
  if (config.mode !== 'pool' || !Array.isArray(config.ttpInbox?.files)) {
    console.error('config must be {"mode": "send"} or {"mode": "pool", "ttpInbox": {...}} (run at the TTP)');
    process.exit(2);
  }
  const files = config.ttpInbox.files;
  const ages = files.flatMap((f) => JSON.parse(f.data)).sort((a, b) => a - b);
  if (ages.length === 0) throw new Error('no values arrived at the TTP');
  const result = {
    algorithm: 'pooled-quantiles',
    sites: files.map((f) => f.sender).sort(),
    n: ages.length,
    q1: quantile(ages, 0.25),
    median: quantile(ages, 0.5),
    q3: quantile(ages, 0.75),
  };
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result));
  console.log(`pooled ${ages.length} values from ${files.length} sites`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
