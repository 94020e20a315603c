// Types of sparql-results.js, for the TypeScript tests and scripts that use it.

export declare const XSD: 'http://www.w3.org/2001/XMLSchema#';

export interface SparqlTerm {
  type: 'uri' | 'bnode' | 'literal';
  value: string;
  datatype?: string;
  lang?: string;
}

export interface SelectResults {
  vars: string[];
  rows: Array<Record<string, SparqlTerm>>;
}

export interface QueryOptions {
  timeoutMs?: number;
}

export declare function normalizeTerm(raw: unknown): SparqlTerm;
export declare function parseSelectResults(json: unknown): SelectResults;
export declare function parseAskResult(json: unknown): boolean;
export declare function termToNumber(term: SparqlTerm | undefined | null): number | null;
export declare function termToBoolean(term: SparqlTerm | undefined | null): boolean | null;
export declare function termToValue(term: SparqlTerm | undefined | null): string | number | boolean | null;
export declare function localName(iri: string): string;
export declare function selectQuery(endpoint: string, query: string, options?: QueryOptions): Promise<SelectResults>;
export declare function askQuery(endpoint: string, query: string, options?: QueryOptions): Promise<boolean>;
