import { useEffect, useState } from 'preact/hooks';
import { TASK_STATUSES, type RunState } from '../../../shared/run-state.js';
import type { TaskSummary } from '../../../shared/types.js';
import { api } from '../api.js';
import { ErrorMessage, Loading, Page, StateBadge } from '../components.js';
import { formatCount, formatTime } from '../format.js';
import { useLoad } from '../hooks.js';
import { navigate, tasksHref } from '../router.js';

export const PAGE_SIZE = 25;
const REFRESH_MS = 4000;

const COUNT_ORDER: RunState[] = [
  'completed',
  'running',
  'assigned',
  'queued',
  'failed',
  'rejected',
  'timed_out',
  'cancelled',
];

function RunCounts({ task }: { task: TaskSummary }) {
  const parts = COUNT_ORDER.filter((s) => (task.runCounts[s] ?? 0) > 0).map(
    (s) => `${task.runCounts[s]} ${s.replace('_', ' ')}`,
  );
  return (
    <span>
      <span class="run-total">{formatCount(task.runTotal)}</span>
      {parts.length ? <span class="muted"> ({parts.join(', ')})</span> : null}
    </span>
  );
}

/** Tasks, newest first, filtered by status, site and text, one page at a time; refreshed live. */
export function TaskList({ status, site, q, page }: { status: string; site: string; q: string; page: number }) {
  const offset = (page - 1) * PAGE_SIZE;
  const tasks = useLoad(
    (signal) =>
      api.taskSummaries(
        { status: status || undefined, site: site || undefined, q: q || undefined, limit: PAGE_SIZE, offset },
        signal,
      ),
    [status, site, q, offset],
    REFRESH_MS,
  );
  const sites = useLoad((signal) => api.sites(signal), []);
  const [text, setText] = useState(q);
  useEffect(() => setText(q), [q]);

  function apply(next: { status?: string; site?: string; q?: string }) {
    navigate(tasksHref({ status, site, q, ...next, page: 1 }));
  }

  const total = tasks.data?.total ?? 0;
  const last = Math.max(1, Math.ceil(total / PAGE_SIZE));
  return (
    <Page
      title="Tasks"
      actions={
        <a class="button" href="#/tasks/new">
          New task
        </a>
      }
    >
      <form
        class="filters"
        role="search"
        aria-label="Filter tasks"
        onSubmit={(e) => {
          e.preventDefault();
          apply({ q: text.trim() });
        }}
      >
        <label class="field">
          <span>Status</span>
          <select value={status} onChange={(e) => apply({ status: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">any</option>
            {TASK_STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label class="field">
          <span>Site</span>
          <select value={site} onChange={(e) => apply({ site: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">any</option>
            {(sites.data ?? []).map((s) => (
              <option value={s.name}>{s.name}</option>
            ))}
          </select>
        </label>
        <label class="field grow">
          <span>Search</span>
          <input
            type="search"
            value={text}
            maxLength={200}
            placeholder="name or image"
            onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorMessage error={tasks.error} />
      {!tasks.data ? (
        tasks.error ? null : (
          <Loading what="tasks" />
        )
      ) : tasks.data.tasks.length === 0 ? (
        <p>No tasks{status || site || q ? ' match these filters' : ' yet'}.</p>
      ) : (
        <table class="list">
          <caption class="visually-hidden">Tasks, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Status</th>
              <th scope="col">Image</th>
              <th scope="col">Owner</th>
              <th scope="col">Runs</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {tasks.data.tasks.map((t) => (
              <tr key={t.id}>
                <td>
                  <a href={`#/tasks/${t.id}`}>
                    #{t.id}
                    {t.name ? ` ${t.name}` : ''}
                  </a>
                </td>
                <td>
                  <StateBadge state={t.status} />
                </td>
                <td class="mono wrap">{t.image}</td>
                <td>{t.owner}</td>
                <td>
                  <RunCounts task={t} />
                </td>
                <td>{formatTime(t.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {tasks.data && total > 0 ? (
        <nav class="pager" aria-label="Pages">
          {page > 1 ? (
            <a class="button" href={tasksHref({ status, site, q, page: page - 1 })}>
              Previous page
            </a>
          ) : null}
          <span>
            {formatCount(Math.min(offset + 1, total))}–{formatCount(Math.min(offset + PAGE_SIZE, total))} of{' '}
            {formatCount(total)}
          </span>
          {page < last ? (
            <a class="button" href={tasksHref({ status, site, q, page: page + 1 })}>
              Next page
            </a>
          ) : null}
        </nav>
      ) : null}
    </Page>
  );
}
