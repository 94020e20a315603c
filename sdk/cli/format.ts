import { isFinalRunState } from '../../shared/run-state.js';
import type { RunDetail, SiteInfo, Task } from '../../shared/types.js';
import { visible } from './terminal-text.js';

/**
 * Left-aligned columns, two spaces apart; the last column is not padded. Cells come from the
 * registry, so their control characters are shown escaped (see terminal-text.ts).
 */
export function table(header: readonly string[], rawRows: readonly (readonly string[])[]): string {
  const rows = rawRows.map((r) => r.map(visible));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/**
 * What a run is doing or how it ended, in a few words: "3/10 training", "exit 1: out of memory",
 * "exit 0; log and files expired" (removed by the registry's retention).
 */
export function runDetail(run: RunDetail): string {
  if (isFinalRunState(run.status)) {
    const parts: string[] = [];
    if (run.exitCode !== null && run.exitCode !== undefined) parts.push(`exit ${run.exitCode}`);
    if (run.reason) parts.push(run.reason);
    const gone = [run.logExpiredAt ? 'log' : null, run.filesExpiredAt ? 'files' : null].filter((g) => g !== null);
    const expired = gone.length > 0 ? `${gone.join(' and ')} expired` : '';
    return visible([parts.join(': '), expired].filter(Boolean).join('; '));
  }
  if (run.cancelRequested) return 'cancel requested';
  const p = run.progress;
  if (!p) return '';
  const amount = p.total !== null ? `${p.current}/${p.total}` : String(p.current);
  return p.message ? `${amount} ${visible(p.message)}` : amount;
}

/** Says that retention removed a run's log or files, in place of them. */
export function expiredNote(what: 'log' | 'files', at: string): string {
  return `(${what === 'log' ? 'log' : 'result files'} removed by the registry's retention at ${visible(at)})`;
}

export function finalRunCount(task: Task): number {
  return task.runs.filter((r) => isFinalRunState(r.status)).length;
}

export function taskTitle(task: Task): string {
  return task.name ? `task ${task.id} (${visible(task.name)})` : `task ${task.id}`;
}

/** One line on how a finished (or abandoned) task went. */
export function taskOutcome(task: Task): string {
  const completed = task.runs.filter((r) => r.status === 'completed').length;
  const others = task.runs.filter((r) => r.status !== 'completed').map((r) => `${visible(r.site)} ${r.status}`);
  const tail = others.length > 0 ? `; ${others.join(', ')}` : '';
  return `${taskTitle(task)} ${task.status}: ${completed} of ${task.runs.length} runs completed${tail}`;
}

export function runsTable(task: Task): string {
  return table(
    ['SITE', 'RUN', 'STATUS', 'DETAIL'],
    task.runs.map((r) => [r.site, String(r.id), r.status, runDetail(r)]),
  );
}

export function describeTask(task: Task): string {
  const rows: [string, string][] = [
    ['task', String(task.id)],
    ...(task.name ? ([['name', task.name]] as [string, string][]) : []),
    ['status', task.status],
    ['image', task.image],
    ['owner', task.owner],
    ['created', task.createdAt],
  ];
  const head = rows.map(([k, v]) => `${k.padEnd(8)}${visible(v)}\n`).join('');
  return `${head}\n${runsTable(task)}`;
}

export function tasksTable(tasks: readonly Task[]): string {
  return table(
    ['ID', 'STATUS', 'RUNS', 'NAME', 'IMAGE', 'CREATED'],
    tasks.map((t) => [
      String(t.id),
      t.status,
      `${finalRunCount(t)}/${t.runs.length}`,
      t.name ?? '-',
      t.image,
      t.createdAt,
    ]),
  );
}

export function sitesTable(sites: readonly SiteInfo[]): string {
  return table(
    ['SITE', 'ENABLED', 'LAST SEEN'],
    sites.map((s) => [s.name, s.enabled ? 'yes' : 'no', s.lastSeen ?? 'never']),
  );
}
