import { EventEmitter } from 'node:events';

/**
 * Where the site client's poll loop is:
 * - starting: identifying the site, preparing the network, recovering what a previous process left;
 * - polling: a claim request is out at the registry (a long poll may wait there);
 * - idle: nothing to do until the next poll interval or cron tick;
 * - full: every run slot is taken; the loop waits for a run to end before it claims another;
 * - backing-off: the registry could not be reached; waiting before the next try;
 * - stopping: close() was called: no more claims, in-flight steps are being interrupted, resources released;
 * - stopped: nothing of the client runs any more.
 */
export type PollerState = 'starting' | 'polling' | 'idle' | 'full' | 'backing-off' | 'stopping' | 'stopped';

/** Which state may follow which. Any state but `stopped` may go to `stopping` (a signal can come at any time). */
const NEXT: Record<PollerState, readonly PollerState[]> = {
  starting: ['polling', 'full', 'stopping'],
  polling: ['idle', 'full', 'backing-off', 'stopping'],
  idle: ['polling', 'stopping'],
  full: ['polling', 'idle', 'stopping'],
  'backing-off': ['polling', 'stopping'],
  stopping: ['stopped'],
  stopped: [],
};

/** A transition the poller's rules do not allow: a bug in the loop, never a condition to handle. */
export class IllegalTransitionError extends Error {
  override readonly name = 'IllegalTransitionError';
  constructor(
    readonly from: PollerState,
    readonly to: PollerState,
  ) {
    super(`the poller cannot go from "${from}" to "${to}"`);
  }
}

/**
 * The poller's state with guarded transitions (as Temporal's worker `State`): `to()` throws on a
 * transition the rules above do not list. Emits `change` (from, to) on every transition, so that
 * tests and logs follow the loop without peeking at timers.
 */
export class PollerStateMachine extends EventEmitter<{ change: [from: PollerState, to: PollerState] }> {
  private current: PollerState = 'starting';

  get state(): PollerState {
    return this.current;
  }

  /** Whether `to(next)` would be allowed now. Staying in the same state is always allowed (and no transition). */
  can(next: PollerState): boolean {
    return next === this.current || NEXT[this.current].includes(next);
  }

  /** Moves to `next`; a no-op when already there; throws IllegalTransitionError when the rules forbid it. */
  to(next: PollerState): void {
    if (next === this.current) return;
    if (!NEXT[this.current].includes(next)) throw new IllegalTransitionError(this.current, next);
    const from = this.current;
    this.current = next;
    this.emit('change', from, next);
  }

  /** Resolves when the state is (or becomes) `wanted`. */
  reached(wanted: PollerState): Promise<void> {
    if (this.current === wanted) return Promise.resolve();
    return new Promise((resolve) => {
      const onChange = (_from: PollerState, to: PollerState) => {
        if (to !== wanted) return;
        this.off('change', onChange);
        resolve();
      };
      this.on('change', onChange);
    });
  }
}
