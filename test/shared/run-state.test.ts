import { describe, expect, it } from 'vitest';
import {
  canMove,
  FINAL_RUN_STATES,
  FINISH_STATES,
  isFinalRunState,
  RUN_STATES,
  RUN_TRANSITIONS,
  siteActionRefusal,
} from '../../shared/run-state.js';

describe('run-state rules', () => {
  it('lets no run leave a final state, and lets every other state reach one', () => {
    for (const state of FINAL_RUN_STATES) expect(RUN_TRANSITIONS[state]).toEqual([]);
    for (const state of RUN_STATES.filter((s) => !isFinalRunState(s)))
      expect(RUN_TRANSITIONS[state].some(isFinalRunState)).toBe(true);
  });

  it('lets a run complete or time out only once it is running, and be rejected by its site before it ends', () => {
    expect(RUN_STATES.filter((s) => canMove(s, 'completed'))).toEqual(['running', 'awaiting_approval']);
    expect(RUN_STATES.filter((s) => canMove(s, 'timed_out'))).toEqual(['running']);
    expect(RUN_STATES.filter((s) => canMove(s, 'rejected'))).toEqual([
      'queued',
      'assigned',
      'running',
      'awaiting_approval',
    ]);
    expect(RUN_STATES.filter((s) => canMove(s, 'awaiting_approval'))).toEqual(['running']);
  });

  it('accepts the same finish again from a final run and refuses a different one', () => {
    for (const state of FINISH_STATES) {
      expect(siteActionRefusal({ finish: state }, state)).toBeNull();
      for (const other of FINISH_STATES.filter((s) => s !== state))
        expect(siteActionRefusal({ finish: other }, state)).toBe(`already ended as ${state}`);
    }
  });

  it('allows progress and logs only while running or awaiting approval, uploads also to a final run', () => {
    const open = (state: string) => state === 'running' || state === 'awaiting_approval';
    for (const state of RUN_STATES) {
      expect(siteActionRefusal('progress', state) === null).toBe(open(state));
      expect(siteActionRefusal('log', state) === null).toBe(open(state));
      expect(siteActionRefusal('upload', state) === null).toBe(open(state) || isFinalRunState(state));
    }
    expect(siteActionRefusal('start', 'running')).toBe('was already started');
  });
});
