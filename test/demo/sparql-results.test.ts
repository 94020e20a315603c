import { describe, expect, it } from 'vitest';
import {
  localName,
  normalizeTerm,
  parseAskResult,
  parseSelectResults,
  termToBoolean,
  termToNumber,
  termToValue,
  XSD,
} from '../../algorithms/lib/sparql-results.js';

// What Virtuoso 7.2 sends for `SELECT ?age ?bmi ?sex ?dx`: typed values as "typed-literal".
const VIRTUOSO_SELECT = {
  head: { link: [], vars: ['patient', 'age', 'bmi', 'sex', 'dx'] },
  results: {
    distinct: false,
    ordered: true,
    bindings: [
      {
        patient: { type: 'uri', value: 'https://w3id.org/pht/demo/site-a/patient/001' },
        age: { type: 'typed-literal', datatype: `${XSD}integer`, value: '63' },
        bmi: { type: 'typed-literal', datatype: `${XSD}decimal`, value: '27.4' },
        sex: { type: 'literal', value: 'F' },
        dx: { type: 'uri', value: 'https://w3id.org/pht/demo#Hypertension' },
      },
      {
        patient: { type: 'bnode', value: 'b0' },
        age: { type: 'typed-literal', datatype: `${XSD}int`, value: '48' },
        sex: { type: 'literal', 'xml:lang': 'en', value: 'M' },
      },
    ],
  },
};

// What Virtuoso sends for ASK with the JSON results format: a one-row table.
const VIRTUOSO_ASK_TRUE = {
  head: { link: [], vars: ['__ASK_RETVAL'] },
  results: {
    distinct: false,
    ordered: true,
    bindings: [{ __ASK_RETVAL: { type: 'typed-literal', datatype: `${XSD}integer`, value: '1' } }],
  },
};

describe('sparql-results parser', () => {
  it('reads Virtuoso-style typed-literal bindings as standard literals, leaving unbound variables out', () => {
    const { vars, rows } = parseSelectResults(VIRTUOSO_SELECT);
    expect(vars).toEqual(['patient', 'age', 'bmi', 'sex', 'dx']);
    expect(rows[0]).toEqual({
      patient: { type: 'uri', value: 'https://w3id.org/pht/demo/site-a/patient/001' },
      age: { type: 'literal', value: '63', datatype: `${XSD}integer` },
      bmi: { type: 'literal', value: '27.4', datatype: `${XSD}decimal` },
      sex: { type: 'literal', value: 'F' },
      dx: { type: 'uri', value: 'https://w3id.org/pht/demo#Hypertension' },
    });
    expect(rows[1]!.bmi).toBeUndefined();
    expect(rows[1]!.sex).toEqual({ type: 'literal', value: 'M', lang: 'en' });
    expect(termToNumber(rows[0]!.age)).toBe(63);
    expect(termToNumber(rows[0]!.bmi)).toBe(27.4);
    expect(termToNumber(rows[1]!.age)).toBe(48);
    expect(termToNumber(rows[1]!.bmi)).toBeNull();
  });

  it('parses the JSON text as well as the parsed object', () => {
    expect(parseSelectResults(JSON.stringify(VIRTUOSO_SELECT))).toEqual(parseSelectResults(VIRTUOSO_SELECT));
  });

  it('reads numbers whose datatype is missing, numbers sent as JSON numbers, and xsd:double forms', () => {
    expect(termToNumber(normalizeTerm({ type: 'literal', value: '63' }))).toBe(63);
    expect(termToNumber(normalizeTerm({ type: 'literal', value: ' 27.40 ' }))).toBe(27.4);
    expect(termToNumber(normalizeTerm({ type: 'literal', value: 27.4 }))).toBe(27.4);
    expect(normalizeTerm({ type: 'literal', value: 63 })).toEqual({
      type: 'literal',
      value: '63',
      datatype: `${XSD}integer`,
    });
    expect(termToNumber(normalizeTerm({ type: 'literal', value: '1.5E1', datatype: `${XSD}double` }))).toBe(15);
    expect(termToNumber(normalizeTerm({ type: 'literal', value: '-.5', datatype: `${XSD}decimal` }))).toBe(-0.5);
    expect(termToNumber(normalizeTerm({ type: 'literal', value: 'INF', datatype: `${XSD}double` }))).toBe(Infinity);
    expect(termToNumber(normalizeTerm({ type: 'literal', value: 'true', datatype: `${XSD}boolean` }))).toBe(1);
  });

  it('gives null, never NaN or 0, for what is not a number', () => {
    for (const raw of [
      { type: 'literal', value: '' },
      { type: 'literal', value: 'NaN', datatype: `${XSD}double` },
      { type: 'literal', value: 'sixty' },
      { type: 'literal', value: '0x10' },
      { type: 'uri', value: 'urn:63' },
    ]) {
      expect(termToNumber(normalizeTerm(raw))).toBeNull();
    }
    expect(termToNumber(undefined)).toBeNull();
  });

  it('converts terms to their natural JavaScript values by datatype', () => {
    expect(termToValue(normalizeTerm({ type: 'typed-literal', datatype: `${XSD}integer`, value: '7' }))).toBe(7);
    expect(termToValue(normalizeTerm({ type: 'literal', datatype: `${XSD}boolean`, value: 'false' }))).toBe(false);
    expect(termToValue(normalizeTerm({ type: 'literal', value: '7' }))).toBe('7');
    expect(termToValue(normalizeTerm({ type: 'uri', value: 'urn:x' }))).toBe('urn:x');
    expect(termToBoolean(normalizeTerm({ type: 'literal', value: '0', datatype: `${XSD}integer` }))).toBe(false);
  });

  it('reads ASK answers in the standard form and in Virtuoso’s one-row-table form', () => {
    expect(parseAskResult({ head: {}, boolean: true })).toBe(true);
    expect(parseAskResult('{"head":{},"boolean":false}')).toBe(false);
    expect(parseAskResult(VIRTUOSO_ASK_TRUE)).toBe(true);
    const no = structuredClone(VIRTUOSO_ASK_TRUE);
    no.results.bindings[0]!.__ASK_RETVAL.value = '0';
    expect(parseAskResult(no)).toBe(false);
    expect(parseAskResult({ head: { vars: ['__ASK_RETVAL'] }, results: { bindings: [] } })).toBe(false);
  });

  it('rejects documents and terms that are not SPARQL results', () => {
    expect(() => parseSelectResults({ head: { vars: [] } })).toThrow(/results\.bindings/);
    expect(() => parseSelectResults({ results: { bindings: [{ x: { type: 'triple', value: 'x' } }] } })).toThrow(
      /unknown/,
    );
    expect(() => parseSelectResults({ results: { bindings: [{ x: { type: 'literal' } }] } })).toThrow(
      /without a value/,
    );
    expect(() =>
      parseAskResult({ head: {}, results: { bindings: [{ a: { type: 'literal', value: '1' } }, {}] } }),
    ).toThrow();
  });

  it('takes the local name of an IRI after # or /', () => {
    expect(localName('https://w3id.org/pht/demo#COPD')).toBe('COPD');
    expect(localName('https://w3id.org/pht/demo/site-a/patient/001')).toBe('001');
  });
});
