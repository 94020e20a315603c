/**
 * From a finished task to the per-site results an analysis combines. A federated analysis must not
 * quietly go on without a site (its answer would no longer be the pooled one), so anything short
 * of a result from every site it asked is an error that says which site failed and why.
 */
import type { PhtClient, TaskWithResults } from '../sdk/index.js';
import type { SiteResult } from './federated.js';

/** Thrown when some site did not send back a result for a task. */
export class SiteResultsMissingError extends Error {
  override readonly name = 'SiteResultsMissingError';
  constructor(
    readonly taskId: number,
    /** One entry per site without a result: its run's status and reason, and its log's last lines. */
    readonly failures: ReadonlyArray<{ site: string; status: string; reason: string | null; logTail: string }>,
  ) {
    super(
      `task ${taskId}: no result from ${failures.map((f) => f.site).join(', ')}\n` +
        failures
          .map(
            (f) =>
              `  ${f.site}: ${f.status}${f.reason ? ` (${f.reason})` : ''}${f.logTail ? `\n    ${f.logTail.split('\n').join('\n    ')}` : ''}`,
          )
          .join('\n'),
    );
  }
}

/**
 * The parsed result.json of every site in `sites`, in that order. Rejects with
 * SiteResultsMissingError (with each failed run's log tail) when a site has none.
 */
export async function resultsFromEverySite<T>(
  pht: PhtClient,
  task: TaskWithResults,
  sites: readonly string[],
  signal?: AbortSignal,
): Promise<SiteResult<T>[]> {
  const failures: Array<{ site: string; status: string; reason: string | null; logTail: string }> = [];
  const results: SiteResult<T>[] = [];
  for (const site of sites) {
    const run = task.runs.find((r) => r.site === site);
    if (run && run.status === 'completed' && run.result !== undefined) {
      results.push({ site, result: run.result as T });
      continue;
    }
    const log = run ? await pht.getRunLog(run.id, { signal }).catch(() => '') : '';
    failures.push({
      site,
      status: run ? run.status : 'no run',
      reason: run ? (run.status === 'completed' ? 'completed without result.json' : (run.reason ?? null)) : null,
      logTail: log.trimEnd().split('\n').slice(-5).join('\n'),
    });
  }
  if (failures.length > 0) throw new SiteResultsMissingError(task.id, failures);
  return results;
}
