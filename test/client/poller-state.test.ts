import { describe, expect, it } from 'vitest';
import { IllegalTransitionError, PollerStateMachine, type PollerState } from '../../client/poller-state.js';

function machineAt(path: PollerState[]): PollerStateMachine {
  const m = new PollerStateMachine();
  for (const s of path) m.to(s);
  return m;
}

describe('the poller state machine', () => {
  it('starts in "starting" and follows a poll cycle, emitting each transition once', () => {
    const m = new PollerStateMachine();
    const seen: string[] = [];
    m.on('change', (from, to) => seen.push(`${from}>${to}`));
    expect(m.state).toBe('starting');
    for (const s of ['polling', 'polling', 'full', 'polling', 'idle', 'polling', 'backing-off', 'polling'] as const)
      m.to(s);
    expect(seen).toEqual([
      'starting>polling',
      'polling>full',
      'full>polling',
      'polling>idle',
      'idle>polling',
      'polling>backing-off',
      'backing-off>polling',
    ]);
  });

  it.each<PollerState[]>([[], ['polling'], ['polling', 'idle'], ['polling', 'full'], ['polling', 'backing-off']])(
    'goes to stopping and then stopped from any running state (after %j)',
    (...path) => {
      const m = machineAt(path);
      m.to('stopping');
      m.to('stopped');
      expect(m.state).toBe('stopped');
    },
  );

  it.each<[PollerState[], PollerState]>([
    [['polling', 'stopping'], 'polling'],
    [['polling', 'stopping'], 'idle'],
    [['polling', 'stopping', 'stopped'], 'polling'],
    [['polling', 'stopping', 'stopped'], 'stopping'],
    [[], 'stopped'],
    [['polling'], 'stopped'],
    [['polling', 'idle'], 'backing-off'],
    [['polling', 'backing-off'], 'idle'],
    [['polling', 'idle'], 'full'],
    [[], 'idle'],
  ])('refuses an illegal transition: after %j, to %s', (path, next) => {
    const m = machineAt(path);
    const before = m.state;
    expect(m.can(next)).toBe(false);
    expect(() => m.to(next)).toThrow(IllegalTransitionError);
    expect(m.state).toBe(before);
  });

  it('resolves reached() when the state is entered, and at once when already there', async () => {
    const m = new PollerStateMachine();
    await m.reached('starting');
    const stopped = m.reached('stopped');
    m.to('stopping');
    m.to('stopped');
    await stopped;
    expect(m.state).toBe('stopped');
  });
});
