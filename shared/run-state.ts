/**
 * Run and task states, and the rules of moving between them. Every registry backend enforces
 * these same rules (SQLite today, PostgreSQL next): a backend reads a run's state, asks here, and
 * writes; it never decides on its own which move is allowed.
 *
 * A run moves queued → assigned → running → one final state; a site may also refuse a queued or
 * assigned run (rejected), and a lease that expires puts an assigned run back to queued.
 */
export const RUN_STATES = [
  'queued',
  'assigned',
  'running',
  // The site holds the results for its officer's review (node client approve|reject).
  'awaiting_approval',
  'completed',
  'failed',
  'rejected',
  'cancelled',
  'timed_out',
] as const;
export type RunState = (typeof RUN_STATES)[number];

export const FINAL_RUN_STATES: readonly RunState[] = ['completed', 'failed', 'rejected', 'cancelled', 'timed_out'];

/** The final states a site may report. */
export const FINISH_STATES = ['completed', 'failed', 'rejected', 'timed_out', 'cancelled'] as const;
export type FinishState = (typeof FINISH_STATES)[number];

export function isFinalRunState(state: RunState): boolean {
  return FINAL_RUN_STATES.includes(state);
}

/**
 * Every move a run can make, whoever makes it: the site (start, finish), the registry (claim,
 * lease expiry, a disabled site) or the researcher (cancel).
 */
export const RUN_TRANSITIONS: Readonly<Record<RunState, readonly RunState[]>> = {
  queued: ['assigned', 'running', 'failed', 'rejected', 'cancelled'],
  assigned: ['queued', 'running', 'failed', 'rejected', 'cancelled'],
  // A site may refuse a run's results after it ran (its output policy): rejected.
  running: ['completed', 'failed', 'timed_out', 'cancelled', 'awaiting_approval', 'rejected'],
  awaiting_approval: ['completed', 'failed', 'rejected', 'cancelled'],
  completed: [],
  failed: [],
  rejected: [],
  cancelled: [],
  timed_out: [],
};

export function canMove(from: RunState, to: RunState): boolean {
  return RUN_TRANSITIONS[from].includes(to);
}

/** What a site may ask of one of its runs. */
export type SiteAction = 'start' | 'progress' | 'log' | 'upload' | { finish: FinishState };

/**
 * Why a site's action on a run in `state` is refused (a 409 message), or null when it is allowed.
 * Repeating the finish a run already has is allowed (a retry after a lost answer), and so is an
 * upload to a final run (an identical file is kept; the store refuses a different one).
 */
export function siteActionRefusal(action: SiteAction, state: RunState): string | null {
  if (action === 'start') {
    if (state === 'running') return 'was already started';
    return canMove(state, 'running') ? null : `cannot start: it is ${state}`;
  }
  if (action === 'progress' || action === 'log') {
    // Held logs and progress are sent once the site's officer approves the results.
    return state === 'running' || state === 'awaiting_approval'
      ? null
      : `cannot ${action === 'log' ? 'append to the log' : 'report progress'}: it is ${state}`;
  }
  if (action === 'upload') {
    return state === 'running' || state === 'awaiting_approval' || isFinalRunState(state)
      ? null
      : `cannot upload files: it is ${state}`;
  }
  if (isFinalRunState(state)) return state === action.finish ? null : `already ended as ${state}`;
  return canMove(state, action.finish) ? null : `cannot become ${action.finish}: it is ${state}`;
}

/** A task's status is derived from its runs (see deriveTaskStatus). */
export const TASK_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export function isFinalTaskStatus(status: TaskStatus): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/**
 * queued: no run has been picked up yet; running: some run is not final and at least one has been
 * picked up or finished; completed: every run completed; cancelled: the task was cancelled and
 * every run is final; failed: every run is final and at least one did not complete.
 */
export function deriveTaskStatus(runStates: readonly RunState[], taskCancelled: boolean): TaskStatus {
  if (runStates.length === 0) return taskCancelled ? 'cancelled' : 'completed';
  const allFinal = runStates.every(isFinalRunState);
  if (!allFinal) return runStates.every((s) => s === 'queued') ? 'queued' : 'running';
  if (taskCancelled) return 'cancelled';
  return runStates.every((s) => s === 'completed') ? 'completed' : 'failed';
}
