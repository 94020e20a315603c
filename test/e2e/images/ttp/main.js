// A test algorithm with a trusted third party. At a data site ("send"): reads the site's ages over
// SPARQL and leaves them in the TTP outbox; the researcher only gets a count. At the TTP ("pool"):
// pools every site's list from its config's ttpInbox and returns the exact median and quartiles.
const fs = require('node:fs');
const path = require('node:path');

const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const out = process.env.PHT_OUTPUT_DIR;

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function main() {
  if (config.mode === 'send') {
    const res = await fetch(process.env.SPARQL_ENDPOINT, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-query', accept: 'application/sparql-results+json' },
      body: 'SELECT ?age WHERE { ?p <urn:age> ?age }',
    });
    const ages = (await res.json()).results.bindings.map((b) => Number(b.age.value));
    fs.mkdirSync(process.env.PHT_TTP_OUTBOX, { recursive: true });
    fs.writeFileSync(path.join(process.env.PHT_TTP_OUTBOX, 'ages.json'), JSON.stringify(ages));
    fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify({ sent: ages.length }));
    return;
  }
  const files = config.ttpInbox.files;
  const ages = files.flatMap((f) => JSON.parse(f.data)).sort((a, b) => a - b);
  fs.writeFileSync(
    path.join(out, 'result.json'),
    JSON.stringify({
      sites: files.map((f) => f.sender).sort(),
      n: ages.length,
      q1: quantile(ages, 0.25),
      median: quantile(ages, 0.5),
      q3: quantile(ages, 0.75),
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
