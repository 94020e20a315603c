/**
 * What the audit log says about each run, gathered from its entries: who asked, what ran and why
 * it was allowed, what it read, what left and who decided. Pure functions over parsed entries.
 */

export interface PostedBy {
  researcher: string | null;
  organization: string | null;
  project: string | null;
}

export interface RunAudit {
  runId: number;
  taskId: number | null;
  image: string | null;
  receivedAt: string | null;
  postedBy: PostedBy | null;
  decision: { allowed: boolean; reason: string | null; at: string | null } | null;
  /** The digest that was verified and run (from the decision or the start). */
  digest: string | null;
  /** Signatures that allowed the digest: who signed, for which organization. */
  signatures: { signer: string; organization: string | null; keyId: string | null }[];
  startedAt: string | null;
  ended: { state: string; exitCode: number | null; at: string | null } | null;
  sparqlQueries: { at: string | null; query: string; outcome: string; queryId: string | null }[];
  filesSent: { name: string; bytes: number; at: string | null }[];
  bytesSent: number;
  held: { at: string | null; reason: string | null } | null;
  review: { decision: 'approved' | 'rejected'; by: string | null; at: string | null; reason: string | null } | null;
  reported: { state: string; at: string | null } | null;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function emptyRun(runId: number): RunAudit {
  return {
    runId,
    taskId: null,
    image: null,
    receivedAt: null,
    postedBy: null,
    decision: null,
    digest: null,
    signatures: [],
    startedAt: null,
    ended: null,
    sparqlQueries: [],
    filesSent: [],
    bytesSent: 0,
    held: null,
    review: null,
    reported: null,
  };
}

/** Folds the log's entries into one summary per run, in the order runs were first seen. */
export function summariseRuns(entries: readonly Record<string, unknown>[]): RunAudit[] {
  const runs = new Map<number, RunAudit>();
  for (const e of entries) {
    const runId = num(e.runId);
    if (runId === null) continue;
    let run = runs.get(runId);
    if (!run) runs.set(runId, (run = emptyRun(runId)));
    const at = str(e.timestamp);
    run.taskId ??= num(e.taskId);
    run.image ??= str(e.image);
    switch (e.event) {
      case 'run_received': {
        // A run handed out again (new attempt) starts a fresh story; the last one is the one told.
        if (run.receivedAt !== null) runs.set(runId, (run = { ...emptyRun(runId), taskId: num(e.taskId) }));
        run.receivedAt = at;
        run.image = str(e.image);
        const p = e.postedBy as Record<string, unknown> | undefined;
        if (p && typeof p === 'object')
          run.postedBy = { researcher: str(p.researcher), organization: str(p.organization), project: str(p.project) };
        break;
      }
      case 'image_decision':
        run.decision = { allowed: e.allowed === true, reason: str(e.reason), at };
        run.digest = str(e.digest) ?? run.digest;
        break;
      case 'run_policy':
        // The site policy's verdict: the digest it verified and the signatures that allowed it.
        run.digest = str(e.digest) ?? run.digest;
        if (Array.isArray(e.signatures))
          run.signatures = e.signatures
            .filter((s): s is Record<string, unknown> => !!s && typeof s === 'object')
            .map((s) => ({ signer: str(s.signer) ?? '?', organization: str(s.organization), keyId: str(s.keyId) }));
        break;
      case 'run_started':
        run.startedAt = at;
        run.digest = str(e.digest) ?? run.digest;
        break;
      case 'run_ended':
        run.ended = { state: str(e.state) ?? '?', exitCode: num(e.exitCode), at };
        run.digest = str(e.digest) ?? run.digest;
        break;
      case 'file_sent': {
        const bytes = num(e.bytes) ?? 0;
        run.filesSent.push({ name: str(e.file) ?? '?', bytes, at });
        run.bytesSent += bytes;
        break;
      }
      case 'output_held':
        run.held = { at, reason: str(e.reason) };
        break;
      case 'run_approved':
      case 'run_rejected':
        run.review = {
          decision: e.event === 'run_approved' ? 'approved' : 'rejected',
          by: str(e.by),
          at: str(e.decidedAt) ?? at,
          reason: str(e.reason),
        };
        break;
      case 'result_reported':
        run.reported = { state: str(e.state) ?? '?', at };
        break;
      default: {
        if (typeof e.event !== 'string' || !e.event.startsWith('sparql')) break;
        // The gateway writes a query when it arrives (with its text) and again with its outcome
        // (same queryId); older logs have one line with both.
        const queryId = str(e.queryId);
        const outcome =
          e.event === 'sparql_query_received'
            ? 'received, no outcome recorded'
            : `${str(e.outcome) ?? e.event.replace(/^sparql_/, '')}${num(e.status) !== null ? ` (status ${num(e.status)})` : ''}`;
        const known = queryId ? run.sparqlQueries.find((q) => q.queryId === queryId) : undefined;
        if (known) {
          if (e.event !== 'sparql_query_received') known.outcome = outcome;
          if (typeof e.query === 'string' && !known.query) known.query = e.query;
        } else if (typeof e.query === 'string' || queryId) {
          run.sparqlQueries.push({ at, query: str(e.query) ?? '', outcome, queryId });
        }
      }
    }
  }
  return [...runs.values()];
}

/** Runs first received at or after `sinceMs` (runs with no receipt in the log are kept). */
export function runsSince(runs: readonly RunAudit[], sinceMs: number | null): RunAudit[] {
  if (sinceMs === null) return [...runs];
  return runs.filter((r) => r.receivedAt === null || Date.parse(r.receivedAt) >= sinceMs);
}

function who(p: PostedBy | null): string {
  if (!p) return 'unknown (registry did not say)';
  const extra = [p.organization && `organization ${p.organization}`, p.project && `project ${p.project}`].filter(
    Boolean,
  );
  return `${p.researcher ?? '?'}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

/** The officer's view of one run, as text. */
export function formatRun(r: RunAudit): string {
  const lines = [`run ${r.runId}${r.taskId !== null ? ` (task ${r.taskId})` : ''}`];
  const row = (k: string, v: string) => lines.push(`  ${(k + ':').padEnd(13)}${v}`);
  row('asked by', who(r.postedBy));
  row('received', r.receivedAt ?? '-');
  row('image', r.image ?? '-');
  if (r.decision)
    row('decision', r.decision.allowed ? 'allowed' : `refused: ${r.decision.reason ?? 'no reason recorded'}`);
  row('digest ran', r.startedAt ? (r.digest ?? '-') : 'nothing ran');
  row(
    'signed by',
    r.signatures.length
      ? r.signatures.map((s) => `${s.signer}${s.organization ? ` (${s.organization})` : ''}`).join(', ')
      : 'no signature required or recorded',
  );
  row('sparql', `${r.sparqlQueries.length} ${r.sparqlQueries.length === 1 ? 'query' : 'queries'}`);
  for (const q of r.sparqlQueries)
    lines.push(`    ${q.at ?? '-'} ${q.outcome}: ${q.query.replace(/\s+/g, ' ').trim().slice(0, 200)}`);
  row('files sent', `${r.filesSent.length} files, ${r.bytesSent} bytes`);
  for (const f of r.filesSent) lines.push(`    ${f.name} ${f.bytes}`);
  if (r.held) row('held', `${r.held.at ?? '-'}${r.held.reason ? `: ${r.held.reason}` : ''}`);
  row(
    'review',
    r.review
      ? `${r.review.decision} by ${r.review.by ?? '?'} at ${r.review.at ?? '-'}${r.review.reason ? `: ${r.review.reason}` : ''}`
      : 'none',
  );
  row(
    'outcome',
    r.reported ? `${r.reported.state} (reported ${r.reported.at ?? '-'})` : (r.ended?.state ?? 'not ended'),
  );
  return lines.join('\n');
}

/** One line per run. */
export function formatRunTable(runs: readonly RunAudit[]): string {
  const header = ['RUN', 'TASK', 'RECEIVED', 'ASKED BY', 'IMAGE', 'OUTCOME', 'FILES', 'BYTES', 'QUERIES'];
  const rows = runs.map((r) => [
    String(r.runId),
    r.taskId === null ? '-' : String(r.taskId),
    r.receivedAt ?? '-',
    r.postedBy?.researcher ?? '-',
    r.image ?? '-',
    r.reported?.state ?? r.ended?.state ?? (r.held ? 'held' : '-'),
    String(r.filesSent.length),
    String(r.bytesSent),
    String(r.sparqlQueries.length),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
