'use strict';
/**
 * Reading SPARQL query results (application/sparql-results+json) the way real endpoints send them.
 *
 * The standard (https://www.w3.org/TR/sparql11-results-json/) says a term is
 *   {"type": "uri" | "bnode" | "literal", "value": "...", "datatype"?: "...", "xml:lang"?: "..."}
 * but endpoints differ in what they actually send, and an algorithm must work at every site:
 * - Virtuoso writes typed values as {"type": "typed-literal", ...} (from the SPARQL 1.0 draft);
 * - the datatype may be missing, so a number can arrive as a plain literal "63";
 * - numbers always arrive as strings ("27.4", "1.5E1", "INF"), though a few endpoints put JSON
 *   numbers or booleans in "value";
 * - Virtuoso answers ASK with a one-row table (variable __ASK_RETVAL) instead of {"boolean": ...}.
 *
 * This file is the single source: algorithms/lib/sparql-results.js. Each algorithm folder holds a
 * copy so that its Dockerfile can be built from that folder alone; demo/build-algorithm-images.sh
 * refreshes the copies and a test fails if they drift.
 *
 * Plain CommonJS with no dependencies: algorithm images have nothing but the node binary.
 */

const XSD = 'http://www.w3.org/2001/XMLSchema#';

/** xsd datatypes whose lexical forms are numbers (integers and their derived types included). */
const NUMERIC_DATATYPES = new Set(
  [
    'integer',
    'decimal',
    'double',
    'float',
    'int',
    'long',
    'short',
    'byte',
    'nonNegativeInteger',
    'positiveInteger',
    'nonPositiveInteger',
    'negativeInteger',
    'unsignedLong',
    'unsignedInt',
    'unsignedShort',
    'unsignedByte',
  ].map((name) => XSD + name),
);

/**
 * One result term in the standard shape: {type: 'uri' | 'bnode' | 'literal', value: string,
 * datatype?: string, lang?: string}. Throws on something that is not a term at all.
 */
function normalizeTerm(raw) {
  if (raw === null || typeof raw !== 'object') throw new Error(`not a SPARQL result term: ${JSON.stringify(raw)}`);
  const value = raw.value;
  if (value === undefined || value === null)
    throw new Error(`SPARQL result term without a value: ${JSON.stringify(raw)}`);
  const type = raw.type === 'typed-literal' ? 'literal' : raw.type;
  const term = { type: type, value: String(value) };
  if (type === 'literal') {
    if (typeof raw.datatype === 'string' && raw.datatype !== '') term.datatype = raw.datatype;
    else if (typeof value === 'number') term.datatype = Number.isInteger(value) ? XSD + 'integer' : XSD + 'double';
    else if (typeof value === 'boolean') term.datatype = XSD + 'boolean';
    const lang = raw['xml:lang'] !== undefined ? raw['xml:lang'] : raw.lang;
    if (typeof lang === 'string' && lang !== '') term.lang = lang;
  } else if (type !== 'uri' && type !== 'bnode') {
    throw new Error(`unknown SPARQL result term type: ${JSON.stringify(raw.type)}`);
  }
  return term;
}

/**
 * Parses a SELECT result document (an object or its JSON text) into
 * {vars: string[], rows: Array<{[variable]: term}>}. An unbound variable is absent from its row.
 */
function parseSelectResults(json) {
  const doc = typeof json === 'string' ? JSON.parse(json) : json;
  if (!doc || typeof doc !== 'object' || !doc.results || !Array.isArray(doc.results.bindings)) {
    throw new Error('not a SPARQL SELECT result: results.bindings is missing');
  }
  const vars = doc.head && Array.isArray(doc.head.vars) ? doc.head.vars.map(String) : [];
  const rows = doc.results.bindings.map((binding) => {
    const row = {};
    for (const name of Object.keys(binding)) row[name] = normalizeTerm(binding[name]);
    return row;
  });
  return { vars: vars, rows: rows };
}

/** Parses an ASK result: {"boolean": true}, or Virtuoso's one-row table with a 1/0 or true/false. */
function parseAskResult(json) {
  const doc = typeof json === 'string' ? JSON.parse(json) : json;
  if (doc && typeof doc.boolean === 'boolean') return doc.boolean;
  if (doc && typeof doc.boolean === 'string') return doc.boolean === 'true' || doc.boolean === '1';
  const rows = doc && doc.results && Array.isArray(doc.results.bindings) ? doc.results.bindings : null;
  if (rows && rows.length <= 1) {
    if (rows.length === 0) return false;
    const terms = Object.values(rows[0]);
    if (terms.length === 1) return termToBoolean(normalizeTerm(terms[0]));
  }
  throw new Error('not a SPARQL ASK result');
}

/**
 * A literal's value as a JavaScript number, or null when the term is missing or not numeric.
 * Accepts numeric datatypes, and also plain or string literals whose text is a number (endpoints
 * that drop the datatype); xsd:boolean counts as 1/0. Never returns NaN.
 */
function termToNumber(term) {
  if (!term || term.type !== 'literal') return null;
  const text = term.value.trim();
  if (term.datatype === XSD + 'boolean') {
    if (text === 'true' || text === '1') return 1;
    if (text === 'false' || text === '0') return 0;
    return null;
  }
  if (text === 'INF' || text === '+INF') return Infinity;
  if (text === '-INF') return -Infinity;
  // The xsd numeric lexical space: no hex, no empty string (which Number() would turn into 0).
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return null;
  return Number(text);
}

/** A literal's value as a boolean, or null: xsd:boolean true/false/1/0, or a number (non-zero). */
function termToBoolean(term) {
  if (!term || term.type !== 'literal') return null;
  const text = term.value.trim();
  if (text === 'true') return true;
  if (text === 'false') return false;
  const n = termToNumber(term);
  return n === null ? null : n !== 0;
}

/** The natural JavaScript value of a term: numbers for numeric datatypes, booleans, else the string. */
function termToValue(term) {
  if (!term) return null;
  if (term.type !== 'literal') return term.value;
  if (term.datatype && NUMERIC_DATATYPES.has(term.datatype)) return termToNumber(term);
  if (term.datatype === XSD + 'boolean') return termToBoolean(term);
  return term.value;
}

/** The part of an IRI after its last '#' or '/': pht#Hypertension → Hypertension. */
function localName(iri) {
  const cut = Math.max(iri.lastIndexOf('#'), iri.lastIndexOf('/'));
  return cut >= 0 ? iri.slice(cut + 1) : iri;
}

/**
 * Sends a query with the SPARQL protocol (POST, form-encoded) and returns the parsed JSON
 * document. Throws with the endpoint's status and the start of its answer when it is not 2xx.
 */
async function postQuery(endpoint, query, options) {
  const timeoutMs = (options && options.timeoutMs) || 60000;
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/sparql-results+json',
    },
    body: new URLSearchParams({ query: query }).toString(),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`SPARQL endpoint answered ${response.status}: ${text.slice(0, 500)}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`SPARQL endpoint did not answer JSON: ${text.slice(0, 200)}`);
  }
}

/** Runs a SELECT query: resolves to {vars, rows} as parseSelectResults gives them. */
async function selectQuery(endpoint, query, options) {
  return parseSelectResults(await postQuery(endpoint, query, options));
}

/** Runs an ASK query: resolves to a boolean. */
async function askQuery(endpoint, query, options) {
  return parseAskResult(await postQuery(endpoint, query, options));
}

module.exports = {
  XSD,
  normalizeTerm,
  parseSelectResults,
  parseAskResult,
  termToNumber,
  termToBoolean,
  termToValue,
  localName,
  selectQuery,
  askQuery,
};
