/**
 * Run and task states. A run moves queued → assigned → running → one final state; a site may also
 * refuse a queued or assigned run (rejected), and a lease that expires puts an assigned run back
 * to queued.
 */
export const RUN_STATES = [
  'queued',
  'assigned',
  'running',
  'completed',
  'failed',
  'rejected',
  'cancelled',
  'timed_out',
] as const;
export type RunState = (typeof RUN_STATES)[number];

export const FINAL_RUN_STATES: readonly RunState[] = ['completed', 'failed', 'rejected', 'cancelled', 'timed_out'];

export function isFinalRunState(state: RunState): boolean {
  return FINAL_RUN_STATES.includes(state);
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
