import { useEffect, useRef, useState } from 'preact/hooks';
import { isFinalRunState } from '../../../shared/run-state.js';
import type { ResultFile, RunDetail } from '../../../shared/types.js';
import { api, ApiError, followTask } from '../api.js';
import { ErrorMessage, Loading, Page, ProgressBar, StateBadge } from '../components.js';
import { formatBytes, formatDuration, formatTime, isSealedFile, isSealedText } from '../format.js';

/**
 * The run, its log and its files. While the run is not final, its task's event stream says when
 * the run changed (state, progress, log length); the log and the files are fetched again then, so
 * the log follows live without polling.
 */
function useLiveRun(id: number) {
  const [run, setRun] = useState<RunDetail | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setRun(null);
    setError(null);
    void (async () => {
      try {
        const first = await api.run(id, abort.signal);
        setRun(first);
        if (isFinalRunState(first.status)) return;
        let pause = 500;
        while (!abort.signal.aborted) {
          let final = false;
          try {
            await followTask(
              first.taskId,
              (task) => {
                const r = task.runs.find((x) => x.id === id);
                if (!r) return;
                final = isFinalRunState(r.status);
                setRun((prev) => (prev && JSON.stringify(prev) === JSON.stringify(r) ? prev : r));
              },
              abort.signal,
            );
            if (final) return;
          } catch (e) {
            if (abort.signal.aborted) return;
            if (e instanceof ApiError && e.status >= 400 && e.status < 500) throw e;
          }
          await new Promise((r) => setTimeout(r, pause));
          pause = Math.min(pause * 2, 10_000);
        }
      } catch (e) {
        if (!abort.signal.aborted) setError(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
      }
    })();
    return () => abort.abort();
  }, [id]);
  return { run, error };
}

function LogView({ run }: { run: RunDetail }) {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  // A new fetch each time the log grew or the run ended; the registry caps a run's log.
  useEffect(() => {
    // Removed by retention: the run says so, and asking for it would only answer 410.
    if (run.logExpiredAt) return;
    const abort = new AbortController();
    api.log(run.id, abort.signal).then(
      (t) => setText(t),
      (e: unknown) => {
        if (!abort.signal.aborted) setError(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
      },
    );
    return () => abort.abort();
  }, [run.id, run.logBytes, run.status, run.logExpiredAt]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  const live = !isFinalRunState(run.status);
  return (
    <section aria-labelledby="log-title">
      <div class="section-head">
        <h2 id="log-title">Log</h2>
        {live ? (
          <label class="check">
            <input
              type="checkbox"
              checked={follow}
              onChange={(e) => setFollow((e.currentTarget as HTMLInputElement).checked)}
            />
            Follow the log
          </label>
        ) : null}
      </div>
      <ErrorMessage error={error} />
      {run.logExpiredAt ? (
        <p>
          <span class="badge expired">expired</span> The registry&apos;s retention removed this log on{' '}
          {formatTime(run.logExpiredAt)} ({formatBytes(run.logBytes)}).
        </p>
      ) : text === null ? (
        <Loading what="the log" />
      ) : isSealedText(text) ? (
        <p>
          <span class="badge sealed">encrypted</span> This log is sealed for the task&apos;s readers (
          {formatBytes(new TextEncoder().encode(text).length)}). The dashboard does not open it: read it with{' '}
          <code>pht task logs</code>.
        </p>
      ) : text === '' ? (
        <p class="muted">{live ? 'Nothing logged yet.' : 'This run logged nothing.'}</p>
      ) : (
        <pre
          class="log"
          ref={pre}
          tabIndex={0}
          aria-label={`Log of run ${run.id}`}
          aria-live={live ? 'polite' : undefined}
        >
          {text}
        </pre>
      )}
    </section>
  );
}

function FilesView({ run }: { run: RunDetail }) {
  const [files, setFiles] = useState<ResultFile[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [downloading, setDownloading] = useState<string | null>(null);
  useEffect(() => {
    if (run.filesExpiredAt) return;
    const abort = new AbortController();
    api.files(run.id, abort.signal).then(setFiles, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
    });
    return () => abort.abort();
  }, [run.id, run.status, run.filesExpiredAt]);

  // A plain link cannot carry the Authorization header: fetch the bytes, then save them.
  async function download(file: ResultFile) {
    setDownloading(file.name);
    setError(null);
    try {
      const blob = await api.file(run.id, file.name);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = file.name.split('/').pop() ?? 'result';
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
    } finally {
      setDownloading(null);
    }
  }

  return (
    <section aria-labelledby="files-title">
      <h2 id="files-title">Result files</h2>
      <ErrorMessage error={error} />
      {run.filesExpiredAt ? (
        <p>
          <span class="badge expired">expired</span> The registry&apos;s retention removed this run&apos;s result files
          on {formatTime(run.filesExpiredAt)}.
        </p>
      ) : files === null ? (
        error ? null : (
          <Loading what="the files" />
        )
      ) : files.length === 0 ? (
        <p class="muted">{isFinalRunState(run.status) ? 'This run sent back no files.' : 'No files yet.'}</p>
      ) : (
        <table class="list">
          <caption class="visually-hidden">Result files of run {run.id}</caption>
          <thead>
            <tr>
              <th scope="col">File</th>
              <th scope="col">Size</th>
              <th scope="col">SHA-256</th>
              <th scope="col">
                <span class="visually-hidden">Download</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {files.map((f) => (
              <tr key={f.name}>
                <th scope="row" class="mono wrap">
                  {f.name}
                  {isSealedFile(f.name) ? <span class="badge sealed">encrypted</span> : null}
                </th>
                <td>{formatBytes(f.size)}</td>
                <td class="mono" title={f.sha256}>
                  {f.sha256.slice(0, 16)}…
                </td>
                <td>
                  <button
                    type="button"
                    class="link"
                    onClick={() => void download(f)}
                    disabled={downloading === f.name}
                    aria-label={`Download ${f.name}`}
                  >
                    Download
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function RunView({ id }: { id: number }) {
  const { run, error } = useLiveRun(id);
  if (!run)
    return (
      <Page title={`Run ${id}`}>
        <ErrorMessage error={error} />
        {error ? null : <Loading what="the run" />}
      </Page>
    );
  return (
    <Page title={`Run ${run.id} at ${run.site}`}>
      <ErrorMessage error={error} />
      <p>
        <a href={`#/tasks/${run.taskId}`}>Back to task #{run.taskId}</a>
      </p>
      <dl class="facts">
        <div>
          <dt>State</dt>
          <dd>
            <StateBadge state={run.status} />
          </dd>
        </div>
        <div>
          <dt>Progress</dt>
          <dd>
            <ProgressBar progress={run.progress} label={`Progress of run ${run.id}`} />
          </dd>
        </div>
        <div>
          <dt>Exit code</dt>
          <dd>{run.exitCode ?? '—'}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{formatDuration(run.durationMs)}</dd>
        </div>
        <div>
          <dt>Attempt</dt>
          <dd>{run.attempt}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTime(run.startedAt)}</dd>
        </div>
        <div>
          <dt>Finished</dt>
          <dd>{formatTime(run.finishedAt)}</dd>
        </div>
        <div class="wide">
          <dt>Digest that ran</dt>
          <dd class="mono wrap">{run.digest ?? '—'}</dd>
        </div>
        {run.reason ? (
          <div class="wide">
            <dt>Reason</dt>
            <dd class="reason">{run.reason}</dd>
          </div>
        ) : null}
      </dl>
      <LogView run={run} />
      <FilesView run={run} />
    </Page>
  );
}
