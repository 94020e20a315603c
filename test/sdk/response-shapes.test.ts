import { describe, expect, it } from 'vitest';
import { PhtResponseError } from '../../sdk/index.js';
import { asTask } from '../../sdk/response-shapes.js';

const origin = { method: 'GET', path: '/api/v1/tasks/1' };

/** A run as a registry from before retention answered it: no logExpiredAt, no filesExpiredAt. */
function runOfAnOlderRegistry(id: number) {
  return {
    id,
    taskId: 1,
    site: `site-${id}`,
    status: 'queued',
    attempt: 0,
    exitCode: null,
    reason: null,
    digest: null,
    durationMs: null,
    progress: null,
    cancelRequested: false,
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    logBytes: 0,
  };
}

function taskWith(runs: object[]) {
  return {
    id: 1,
    name: 'count',
    image: '127.0.0.1:5050/pht/count:1',
    owner: 'alice',
    status: 'queued',
    createdAt: '2026-01-01T00:00:00.000Z',
    runs,
  };
}

describe("the SDK's checks of the registry's answers", () => {
  it('reads a task from a registry that predates the retention fields', () => {
    const task = asTask(taskWith([runOfAnOlderRegistry(1)]), origin);
    expect(task.runs[0]!.logExpiredAt).toBeUndefined();
  });

  it('names the first ten problems of a large wrong answer and counts the rest', () => {
    const broken = Array.from({ length: 2_000 }, (_, i) => ({ ...runOfAnOlderRegistry(i + 1), status: 'lost' }));
    let error: unknown;
    try {
      asTask(taskWith(broken), origin);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PhtResponseError);
    const message = (error as Error).message;
    expect(message).toContain('answer.runs[0].status');
    expect(message).toContain('and 1990 more');
    expect(message.length).toBeLessThan(2_000);
  });
});
