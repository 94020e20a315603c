'use strict';
/**
 * logistic-regression: one Newton–Raphson round of a federated logistic regression, site side.
 *
 * Model: logit P(survived2y = 1) = b0 + b_age * age' + b_bmi * bmi' + b_sex * female, where
 * age' = (age - center) / scale and bmi' likewise, with centring and scaling constants from the
 * config (the same at every site, so the sites' sums add up). Scaled features keep the Hessian
 * well conditioned, so Newton converges in a handful of rounds.
 *
 * At the coefficients it is given, the site returns the gradient and the Hessian of its
 * log-likelihood, the log-likelihood itself and the number of patients used. Gradients and
 * Hessians of the sites add up to those of the pooled data, so the researcher's Newton step
 *   b_new = b - (sum of Hessians)^-1 (sum of gradients)
 * is exactly the step a central analysis would take (see demo/federated.ts).
 *
 * The container contract (see README.md):
 *   SPARQL_ENDPOINT    the site's SPARQL endpoint (required)
 *   PHT_CONFIG_FILE    JSON config: {"coefficients": [b0, b_age, b_bmi, b_sex], "standardize": {...}}
 *   PHT_OUTPUT_DIR     where result.json is written
 *   PHT_PROGRESS_FILE  JSON lines {"current", "total", "message"} are appended here
 *   PHT_TASK_ID, PHT_RUN_ID  copied into the result, for the researcher's bookkeeping
 */
const fs = require('node:fs');
const path = require('node:path');
const { selectQuery, termToNumber } = require('./sparql-results.js');

const ALGORITHM = 'logistic-regression';
const RESULT_VERSION = 1;
const FEATURES = ['intercept', 'age', 'bmi', 'female'];

// OPTIONAL everywhere so that incomplete patients come back too and can be counted as excluded.
const QUERY = `
PREFIX pht: <https://w3id.org/pht/demo#>
SELECT ?patient ?age ?bmi ?sex ?survived WHERE {
  ?patient a pht:Patient .
  OPTIONAL { ?patient pht:age ?age }
  OPTIONAL { ?patient pht:bmi ?bmi }
  OPTIONAL { ?patient pht:sex ?sex }
  OPTIONAL { ?patient pht:survived2y ?survived }
}`;

const DEFAULT_CONFIG = {
  // Start of the first round; later rounds send the researcher's updated coefficients.
  coefficients: [0, 0, 0, 0],
  standardize: { age: { center: 60, scale: 10 }, bmi: { center: 27, scale: 5 } },
  // A site with fewer usable patients than this reports nothing: small sums identify people.
  minCount: 10,
};

/** Thrown for a config the researcher must fix; the program exits with code 2. */
class ConfigError extends Error {}

function checkScaling(name, value) {
  if (
    !value ||
    typeof value !== 'object' ||
    !Number.isFinite(value.center) ||
    !Number.isFinite(value.scale) ||
    value.scale <= 0
  ) {
    throw new ConfigError(`standardize.${name} must be {"center": number, "scale": number > 0}`);
  }
  return { center: value.center, scale: value.scale };
}

function readConfig(file) {
  let config = {};
  if (file && fs.existsSync(file)) {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (text !== '' && text !== 'null') {
      try {
        config = JSON.parse(text);
      } catch (err) {
        throw new ConfigError(`config is not JSON: ${err.message}`);
      }
    }
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ConfigError('config must be a JSON object');
  }
  for (const key of Object.keys(config)) {
    if (!(key in DEFAULT_CONFIG)) {
      throw new ConfigError(`unknown config field "${key}" (known: ${Object.keys(DEFAULT_CONFIG).join(', ')})`);
    }
  }
  const coefficients = config.coefficients === undefined ? DEFAULT_CONFIG.coefficients : config.coefficients;
  if (!Array.isArray(coefficients) || coefficients.length !== FEATURES.length || !coefficients.every(Number.isFinite)) {
    throw new ConfigError(`coefficients must be ${FEATURES.length} finite numbers: [${FEATURES.join(', ')}]`);
  }
  const standardize = { ...DEFAULT_CONFIG.standardize, ...(config.standardize || {}) };
  const minCount = config.minCount === undefined ? DEFAULT_CONFIG.minCount : config.minCount;
  if (!Number.isInteger(minCount) || minCount < 1) throw new ConfigError('minCount must be a positive integer');
  return {
    coefficients,
    standardize: { age: checkScaling('age', standardize.age), bmi: checkScaling('bmi', standardize.bmi) },
    minCount,
  };
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

/** log(1 + e^eta) without overflow for large |eta|. */
function log1pExp(eta) {
  return eta > 0 ? eta + Math.log1p(Math.exp(-eta)) : Math.log1p(Math.exp(eta));
}

/** The feature vector of one row, or null when a value is missing or unusable. */
function features(row, standardize) {
  const age = termToNumber(row.age);
  const bmi = termToNumber(row.bmi);
  const sex = row.sex ? row.sex.value : null;
  const y = termToNumber(row.survived);
  if (age === null || !Number.isFinite(age) || bmi === null || !Number.isFinite(bmi)) return null;
  if (sex !== 'F' && sex !== 'M') return null;
  if (y !== 0 && y !== 1) return null;
  const x = [
    1,
    (age - standardize.age.center) / standardize.age.scale,
    (bmi - standardize.bmi.center) / standardize.bmi.scale,
    sex === 'F' ? 1 : 0,
  ];
  return { x, y };
}

async function main() {
  const env = process.env;
  const endpoint = env.SPARQL_ENDPOINT;
  const outputDir = env.PHT_OUTPUT_DIR || '/pht/output';
  const progressFile = env.PHT_PROGRESS_FILE || null;
  if (!endpoint) throw new ConfigError('SPARQL_ENDPOINT is not set');
  const config = readConfig(env.PHT_CONFIG_FILE || '/pht/input/config.json');
  const b = config.coefficients;
  const k = FEATURES.length;

  reportProgress(progressFile, 0, 2, 'querying patients');
  const { rows } = await selectQuery(endpoint, QUERY);

  reportProgress(progressFile, 1, 2, `evaluating the likelihood over ${rows.length} patients`);
  const gradient = new Array(k).fill(0);
  const hessian = Array.from({ length: k }, () => new Array(k).fill(0));
  const seen = new Set();
  let logLikelihood = 0;
  let count = 0;
  let excluded = 0;
  for (const row of rows) {
    if (seen.has(row.patient.value)) throw new Error(`patient ${row.patient.value} has a property with several values`);
    seen.add(row.patient.value);
    const obs = features(row, config.standardize);
    if (obs === null) {
      excluded += 1;
      continue;
    }
    const { x, y } = obs;
    let eta = 0;
    for (let i = 0; i < k; i++) eta += b[i] * x[i];
    const p = 1 / (1 + Math.exp(-eta));
    const w = p * (1 - p);
    logLikelihood += y * eta - log1pExp(eta);
    for (let i = 0; i < k; i++) {
      gradient[i] += (y - p) * x[i];
      for (let j = 0; j < k; j++) hessian[i][j] -= w * x[i] * x[j];
    }
    count += 1;
  }
  if (count < config.minCount) {
    throw new Error(`only ${count} complete patients, fewer than minCount ${config.minCount}: nothing is reported`);
  }

  const result = {
    algorithm: ALGORITHM,
    version: RESULT_VERSION,
    taskId: env.PHT_TASK_ID || null,
    runId: env.PHT_RUN_ID || null,
    features: FEATURES,
    standardize: config.standardize,
    coefficients: b,
    count,
    excluded,
    logLikelihood,
    gradient,
    hessian,
  };
  fs.mkdirSync(outputDir, { recursive: true });
  fs.writeFileSync(path.join(outputDir, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  reportProgress(progressFile, 2, 2, 'done');
}

main().catch((err) => {
  console.error(`${ALGORITHM} failed: ${err.message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
});
