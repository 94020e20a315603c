// A test algorithm that stops halfway until the test says "go": it reports progress 1/2, then
// asks its SPARQL endpoint (through the site's gateway) every 200 ms whether the go triple for its
// task is there, and only then writes its result and ends. So a browser test can look at a
// running run with a half-full progress bar for as long as it needs, without timing guesses.
const fs = require('node:fs');
const path = require('node:path');

const progress = (current, total, message) =>
  fs.appendFileSync(process.env.PHT_PROGRESS_FILE, JSON.stringify({ current, total, message }) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function go() {
  const query = `ASK { <urn:pht-e2e:task:${process.env.PHT_TASK_ID}> <urn:pht-e2e:go> true }`;
  try {
    const res = await fetch(process.env.SPARQL_ENDPOINT, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-query', accept: 'application/sparql-results+json' },
      body: query,
      signal: AbortSignal.timeout(5000),
    });
    return res.ok && (await res.json()).boolean === true;
  } catch {
    return false;
  }
}

async function main() {
  console.log('stepper: started, waiting for the go signal');
  progress(1, 2, 'waiting for go');
  while (!(await go())) await sleep(200);
  fs.writeFileSync(path.join(process.env.PHT_OUTPUT_DIR, 'result.json'), JSON.stringify({ answer: 42 }) + '\n');
  console.log('stepper: result written');
  progress(2, 2, 'done');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(String(e));
    process.exit(1);
  },
);
