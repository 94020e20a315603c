'use strict';
/**
 * descriptive-stats: summaries of a site's patients that a researcher can pool exactly.
 *
 * For age and BMI it reports count, mean and M2 (the sum of squared deviations from the site's own
 * mean) — enough to combine sites into the exact pooled mean and standard deviation without ever
 * seeing a patient — plus the site's own sd, min and max. For sex and diagnosis it reports counts.
 *
 * The container contract (see README.md):
 *   SPARQL_ENDPOINT    the site's SPARQL endpoint (required)
 *   PHT_CONFIG_FILE    JSON config, e.g. {"minCount": 10} (optional: defaults apply)
 *   PHT_OUTPUT_DIR     where result.json is written
 *   PHT_PROGRESS_FILE  JSON lines {"current", "total", "message"} are appended here
 *   PHT_TASK_ID, PHT_RUN_ID  copied into the result, for the researcher's bookkeeping
 */
const fs = require('node:fs');
const path = require('node:path');
const { selectQuery, termToNumber, localName } = require('./sparql-results.js');

const ALGORITHM = 'descriptive-stats';
const RESULT_VERSION = 1;

// One row per patient; OPTIONAL so that a missing BMI leaves the patient in the other counts.
const QUERY = `
PREFIX pht: <https://w3id.org/pht/demo#>
SELECT ?patient ?age ?bmi ?sex ?diagnosis WHERE {
  ?patient a pht:Patient .
  OPTIONAL { ?patient pht:age ?age }
  OPTIONAL { ?patient pht:bmi ?bmi }
  OPTIONAL { ?patient pht:sex ?sex }
  OPTIONAL { ?patient pht:diagnosis ?diagnosis }
}`;

const DEFAULT_CONFIG = {
  // A site with fewer patients than this reports nothing: small counts identify people.
  minCount: 10,
};

/** Thrown for a config the researcher must fix; the program exits with code 2. */
class ConfigError extends Error {}

function readConfig(file) {
  if (!file || !fs.existsSync(file)) return { ...DEFAULT_CONFIG };
  const text = fs.readFileSync(file, 'utf8').trim();
  if (text === '' || text === 'null') return { ...DEFAULT_CONFIG };
  let config;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config is not JSON: ${err.message}`);
  }
  if (typeof config !== 'object' || Array.isArray(config)) throw new ConfigError('config must be a JSON object');
  for (const key of Object.keys(config)) {
    if (!(key in DEFAULT_CONFIG)) throw new ConfigError(`unknown config field "${key}" (known: minCount)`);
  }
  const merged = { ...DEFAULT_CONFIG, ...config };
  if (!Number.isInteger(merged.minCount) || merged.minCount < 1) {
    throw new ConfigError('minCount must be a positive integer');
  }
  return merged;
}

/** Appends one progress line; progress is a courtesy, so failing to write it is not fatal. */
function reportProgress(file, current, total, message) {
  console.log(`[${current}/${total}] ${message}`);
  if (!file) return;
  try {
    fs.appendFileSync(file, JSON.stringify({ current, total, message }) + '\n');
  } catch (err) {
    console.error(`could not write progress: ${err.message}`);
  }
}

/**
 * Welford's running mean and M2: numerically stable in one pass, and exactly the quantities that
 * pool across sites (Chan et al.'s parallel formula, see demo/federated.ts).
 */
function newSummary() {
  return { count: 0, mean: 0, m2: 0, min: null, max: null };
}

function addValue(summary, x) {
  summary.count += 1;
  const delta = x - summary.mean;
  summary.mean += delta / summary.count;
  summary.m2 += delta * (x - summary.mean);
  summary.min = summary.min === null ? x : Math.min(summary.min, x);
  summary.max = summary.max === null ? x : Math.max(summary.max, x);
}

function finishSummary(s) {
  return {
    count: s.count,
    mean: s.count > 0 ? s.mean : null,
    m2: s.m2,
    sd: s.count > 1 ? Math.sqrt(s.m2 / (s.count - 1)) : null,
    min: s.min,
    max: s.max,
  };
}

function countInto(counts, key) {
  counts[key] = (counts[key] || 0) + 1;
}

async function main() {
  const env = process.env;
  const endpoint = env.SPARQL_ENDPOINT;
  const outputDir = env.PHT_OUTPUT_DIR || '/pht/output';
  const progressFile = env.PHT_PROGRESS_FILE || null;
  if (!endpoint) throw new ConfigError('SPARQL_ENDPOINT is not set');
  const config = readConfig(env.PHT_CONFIG_FILE || '/pht/input/config.json');

  reportProgress(progressFile, 0, 2, 'querying patients');
  const { rows } = await selectQuery(endpoint, QUERY);

  reportProgress(progressFile, 1, 2, `summarising ${rows.length} patients`);
  const seen = new Set();
  const age = newSummary();
  const bmi = newSummary();
  const sex = {};
  const diagnosis = {};
  for (const row of rows) {
    // A property with two values would yield two rows for one patient and count them twice.
    if (seen.has(row.patient.value)) throw new Error(`patient ${row.patient.value} has a property with several values`);
    seen.add(row.patient.value);
    const a = termToNumber(row.age);
    if (a !== null && Number.isFinite(a)) addValue(age, a);
    const b = termToNumber(row.bmi);
    if (b !== null && Number.isFinite(b)) addValue(bmi, b);
    countInto(sex, row.sex ? row.sex.value : 'missing');
    countInto(diagnosis, row.diagnosis ? localName(row.diagnosis.value) : 'missing');
  }
  if (seen.size < config.minCount) {
    throw new Error(`only ${seen.size} patients, fewer than minCount ${config.minCount}: nothing is reported`);
  }

  const result = {
    algorithm: ALGORITHM,
    version: RESULT_VERSION,
    taskId: env.PHT_TASK_ID || null,
    runId: env.PHT_RUN_ID || null,
    patients: seen.size,
    variables: { age: finishSummary(age), bmi: finishSummary(bmi) },
    categories: { sex, diagnosis },
  };
  fs.mkdirSync(outputDir, { recursive: true });
  fs.writeFileSync(path.join(outputDir, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  reportProgress(progressFile, 2, 2, 'done');
}

main().catch((err) => {
  console.error(`${ALGORITHM} failed: ${err.message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
});
