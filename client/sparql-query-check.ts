import { Generator, Parser, type SparqlQuery } from 'sparqljs';

/** Longest query text the gateway parses (the parser is synchronous: bound the time it can take). */
export const MAX_QUERY_CHARS = 256 * 1024;

export type QueryCheck =
  { ok: true; kind: 'query' | 'update'; form: string; text: string } | { ok: false; status: 400 | 403; reason: string };

/**
 * Decides whether a container's SPARQL text may reach the site's endpoint, with a real SPARQL 1.1
 * parser (sparqljs): read queries only (unless updates are allowed), no SERVICE anywhere (a
 * federated query would leave the site with data in it), and FROM / FROM NAMED only for the graphs
 * the site lists (none by default: a container sees only the endpoint's default dataset).
 *
 * What is forwarded is the query as the parser understood it, serialised again: the endpoint never
 * sees text that a different parser (with its own extensions and quirks) might read otherwise.
 */
export function checkSparql(text: string, options: { allowUpdates: boolean; allowedGraphs: string[] }): QueryCheck {
  if (text.length > MAX_QUERY_CHARS)
    return { ok: false, status: 400, reason: `query longer than ${MAX_QUERY_CHARS} characters` };
  let parsed: SparqlQuery;
  try {
    parsed = new Parser({ skipUngroupedVariableCheck: false }).parse(text);
  } catch (e) {
    const message = (e as Error).message?.split('\n')[0] ?? 'parse error';
    return { ok: false, status: 400, reason: `not a valid SPARQL 1.1 query: ${message.slice(0, 200)}` };
  }
  if (parsed.type === 'update' && !options.allowUpdates)
    return { ok: false, status: 403, reason: 'SPARQL updates are not allowed at this site' };
  if (containsService(parsed))
    return { ok: false, status: 403, reason: 'SERVICE (federated queries) is not allowed at this site' };
  if (parsed.type === 'query') {
    const allowed = new Set(options.allowedGraphs);
    for (const graph of [...(parsed.from?.default ?? []), ...(parsed.from?.named ?? [])]) {
      if (!allowed.has(graph.value))
        return {
          ok: false,
          status: 403,
          reason: `FROM <${graph.value.slice(0, 200)}> names a graph this site does not open to queries`,
        };
    }
  }
  const form = parsed.type === 'query' ? parsed.queryType : 'UPDATE';
  return { ok: true, kind: parsed.type, form, text: new Generator().stringify(parsed) };
}

/** A SERVICE pattern anywhere: in groups, OPTIONAL, UNION, MINUS, subqueries, EXISTS filters, updates. */
function containsService(node: unknown, depth = 0): boolean {
  if (depth > 10_000 || node === null || typeof node !== 'object') return false;
  if ((node as { type?: unknown }).type === 'service') return true;
  for (const value of Array.isArray(node) ? node : Object.values(node))
    if (typeof value === 'object' && containsService(value, depth + 1)) return true;
  return false;
}
