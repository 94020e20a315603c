import type { ComponentChildren } from 'preact';
import type { RunProgress } from '../../shared/types.js';
import type { ApiError } from './api.js';

const STATE_LABELS: Record<string, string> = {
  queued: 'queued',
  assigned: 'assigned',
  running: 'running',
  completed: 'completed',
  failed: 'failed',
  rejected: 'rejected',
  cancelled: 'cancelled',
  timed_out: 'timed out',
};

/** A run or task state: always its word, with a colour that only repeats it. */
export function StateBadge({ state }: { state: string }) {
  const known = Object.hasOwn(STATE_LABELS, state);
  return <span class={`badge state-${known ? state : 'unknown'}`}>{known ? STATE_LABELS[state] : state}</span>;
}

/** A native progress bar (role progressbar, with its value announced) and its text. */
export function ProgressBar({ progress, label }: { progress: RunProgress | null; label: string }) {
  if (!progress) return <span class="muted">—</span>;
  const { current, total, message } = progress;
  const determinate = total !== null && total > 0;
  const text = determinate ? `${current}/${total}` : `${current}`;
  return (
    <span class="progress">
      {determinate ? (
        <progress max={total} value={Math.min(current, total)} aria-label={label} />
      ) : (
        <progress aria-label={label} />
      )}
      <span class="progress-text">
        {text}
        {message ? ` ${message}` : ''}
      </span>
    </span>
  );
}

export function ErrorMessage({ error }: { error: ApiError | null }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** Shows a secret once, with the warning that it cannot be shown again. */
export function SecretOnce({ label, value, onDone }: { label: string; value: string; onDone: () => void }) {
  return (
    <section class="secret" aria-labelledby="secret-title">
      <h2 id="secret-title">Shown once: copy it now</h2>
      <p>Hand it over securely. The registry keeps only its hash and cannot show it again.</p>
      <label class="field">
        <span>{label}</span>
        <input
          class="mono"
          readOnly
          value={value}
          onFocus={(e) => (e.currentTarget as HTMLInputElement).select()}
          autoComplete="off"
          spellcheck={false}
        />
      </label>
      <button type="button" onClick={onDone}>
        I have copied it
      </button>
    </section>
  );
}

export function Page({
  title,
  children,
  actions,
}: {
  title: string;
  children: ComponentChildren;
  actions?: ComponentChildren;
}) {
  return (
    <>
      <div class="page-head">
        <h1 id="page-title" tabIndex={-1}>
          {title}
        </h1>
        {actions ? <div class="actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}
