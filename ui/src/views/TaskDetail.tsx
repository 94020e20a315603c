import { Component } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { isFinalRunState, isFinalTaskStatus, RUN_STATES, type RunState } from '../../../shared/run-state.js';
import type { RunDetail, Task } from '../../../shared/types.js';
import { api, ApiError, followTask } from '../api.js';
import { ErrorMessage, Loading, Page, ProgressBar, StateBadge } from '../components.js';
import { formatCount, formatDuration, formatTime, shortDigest } from '../format.js';

/**
 * Keeps the previous object of every run that did not change, so each row re-renders only when
 * its own run did: an event on a 500-run task touches a handful of rows, not 500.
 */
function shareUnchanged(previous: Task | null, next: Task): Task {
  if (!previous) return next;
  const before = new Map(previous.runs.map((r) => [r.id, r]));
  const runs = next.runs.map((r) => {
    const old = before.get(r.id);
    return old && JSON.stringify(old) === JSON.stringify(r) ? old : r;
  });
  return { ...next, runs };
}

/** Live: a task by its event stream, reconnecting with a growing pause if the stream breaks. */
function useLiveTask(id: number): { task: Task | null; error: ApiError | null } {
  const [task, setTask] = useState<Task | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setTask(null);
    setError(null);
    void (async () => {
      let pause = 500;
      while (!abort.signal.aborted) {
        let final = false;
        try {
          await followTask(
            id,
            (t) => {
              setError(null);
              final = isFinalTaskStatus(t.status);
              setTask((prev) => shareUnchanged(prev, t));
            },
            abort.signal,
          );
          if (final) return;
        } catch (e) {
          if (abort.signal.aborted) return;
          const err = e instanceof ApiError ? e : new ApiError(0, 'network_error', 'the event stream broke');
          setError(err);
          if (err.status === 404 || err.status === 401 || err.status === 403) return;
        }
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(pause * 2, 10_000);
      }
    })();
    return () => abort.abort();
  }, [id]);
  return { task, error };
}

function elapsed(run: RunDetail, now: number): number | null {
  if (run.durationMs !== null) return run.durationMs;
  if (run.startedAt && !isFinalRunState(run.status)) return now - Date.parse(run.startedAt);
  if (run.startedAt && run.finishedAt) return Date.parse(run.finishedAt) - Date.parse(run.startedAt);
  return null;
}

interface RowProps {
  run: RunDetail;
  /** Only running rows get the clock, so a tick re-renders only them. */
  now: number;
}

class RunRow extends Component<RowProps> {
  override shouldComponentUpdate(next: RowProps): boolean {
    return next.run !== this.props.run || (next.run.status === 'running' && next.now !== this.props.now);
  }
  override render({ run, now }: RowProps) {
    return (
      <tr class={`run state-row-${run.status}`}>
        <th scope="row">{run.site}</th>
        <td>
          <StateBadge state={run.status} />
          {run.cancelRequested && run.status === 'running' ? <span class="muted"> (stopping)</span> : null}
        </td>
        <td>
          <ProgressBar progress={run.progress} label={`Progress at ${run.site}`} />
        </td>
        <td>{formatDuration(elapsed(run, now))}</td>
        <td>{run.exitCode ?? '—'}</td>
        <td class="mono">{shortDigest(run.digest)}</td>
        <td class="reason">{run.reason ?? ''}</td>
        <td>
          <a href={`#/runs/${run.id}`} aria-label={`Log and files of the run at ${run.site}`}>
            Log and files
          </a>
        </td>
      </tr>
    );
  }
}

/** One task: its runs per site, live, with cancel for its owner or an admin. */
export function TaskDetail({ id }: { id: number }) {
  const { task, error } = useLiveTask(id);
  const [now, setNow] = useState(Date.now());
  const [stateFilter, setStateFilter] = useState('');
  const [siteFilter, setSiteFilter] = useState('');
  const [cancelError, setCancelError] = useState<ApiError | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const running = task !== null && !isFinalTaskStatus(task.status);
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);

  const counts = useMemo(() => {
    const c: Partial<Record<RunState, number>> = {};
    for (const r of task?.runs ?? []) c[r.status] = (c[r.status] ?? 0) + 1;
    return c;
  }, [task]);
  const shown = useMemo(() => {
    const needle = siteFilter.trim().toLowerCase();
    return (task?.runs ?? []).filter(
      (r) => (!stateFilter || r.status === stateFilter) && (!needle || r.site.includes(needle)),
    );
  }, [task, stateFilter, siteFilter]);

  async function cancel() {
    setCancelling(true);
    setCancelError(null);
    try {
      await api.cancelTask(id);
    } catch (e) {
      setCancelError(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
    } finally {
      setCancelling(false);
    }
  }

  if (!task) {
    return (
      <Page title={`Task #${id}`}>
        <ErrorMessage error={error} />
        {error ? null : <Loading what="the task" />}
      </Page>
    );
  }
  return (
    <Page
      title={`Task #${task.id}${task.name ? `: ${task.name}` : ''}`}
      actions={
        running ? (
          <button
            type="button"
            class="danger"
            onClick={() => void cancel()}
            disabled={cancelling || task.runs.some((r) => r.cancelRequested)}
          >
            Cancel task
          </button>
        ) : null
      }
    >
      <ErrorMessage error={cancelError} />
      {error ? (
        <p class="muted" role="status">
          Live updates interrupted ({error.message}); reconnecting…
        </p>
      ) : null}
      <dl class="facts">
        <div>
          <dt>Status</dt>
          <dd>
            <StateBadge state={task.status} />
          </dd>
        </div>
        <div>
          <dt>Image</dt>
          <dd class="mono wrap">{task.image}</dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>{task.owner}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{formatTime(task.createdAt)}</dd>
        </div>
        <div>
          <dt>Runs</dt>
          <dd>
            {formatCount(task.runs.length)}
            {RUN_STATES.filter((s) => counts[s]).map((s) => (
              <span class="count">
                {' '}
                <StateBadge state={s} /> {counts[s]}
              </span>
            ))}
          </dd>
        </div>
      </dl>
      <div role="status" aria-live="polite" class="visually-hidden">
        Task {task.status}
      </div>
      <h2>Runs</h2>
      {task.runs.length > 10 ? (
        <form class="filters" role="search" aria-label="Filter runs" onSubmit={(e) => e.preventDefault()}>
          <label class="field">
            <span>Run state</span>
            <select value={stateFilter} onChange={(e) => setStateFilter((e.currentTarget as HTMLSelectElement).value)}>
              <option value="">any</option>
              {RUN_STATES.map((s) => (
                <option value={s}>{s}</option>
              ))}
            </select>
          </label>
          <label class="field">
            <span>Site name</span>
            <input
              type="search"
              value={siteFilter}
              onInput={(e) => setSiteFilter((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <span class="muted">
            {formatCount(shown.length)} of {formatCount(task.runs.length)} runs shown
          </span>
        </form>
      ) : null}
      <div class="table-scroll">
        <table class="runs">
          <caption class="visually-hidden">Runs of task #{task.id}, one per site</caption>
          <thead>
            <tr>
              <th scope="col">Site</th>
              <th scope="col">State</th>
              <th scope="col">Progress</th>
              <th scope="col">Duration</th>
              <th scope="col">Exit code</th>
              <th scope="col">Digest</th>
              <th scope="col">Reason</th>
              <th scope="col">
                <span class="visually-hidden">Details</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <RunRow key={r.id} run={r} now={now} />
            ))}
          </tbody>
        </table>
      </div>
    </Page>
  );
}
