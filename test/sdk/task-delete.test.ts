import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../sdk/cli/main.js';
import { PhtApiError } from '../../sdk/index.js';
import { IMAGE, startWorld, type RegistryWorld } from './registry-world.js';

let world: RegistryWorld;

beforeEach(async () => {
  world = await startWorld();
});

afterEach(async () => {
  await world.close();
});

async function pht(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    env: { PHT_URL: world.registry.url, PHT_TOKEN: world.token },
  });
  return { code, out, err };
}

describe('deleting a task', () => {
  it('PhtClient.deleteTask deletes a finished task and refuses an unfinished one with 409 task_not_final', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const refused = await world.client.deleteTask(task.id).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PhtApiError);
    expect(refused).toMatchObject({ status: 409, code: 'task_not_final' });
    await world.siteA.play({ files: { 'result.json': { n: 1 } } });
    expect(await world.client.deleteTask(task.id)).toEqual({ id: task.id, runs: 1, files: 1 });
    await expect(world.client.getTask(task.id)).rejects.toMatchObject({ status: 404 });
    expect(fs.readdirSync(path.join(world.registry.dataDir, 'files'))).toEqual([]);
  });

  it('pht task delete prints what went, or JSON with --json, and exits 3 for an unfinished task', async () => {
    const first = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const unfinished = await pht(['task', 'delete', String(first.id)]);
    expect(unfinished.code).toBe(3);
    expect(unfinished.err).toContain(
      'only a finished task can be deleted (cancel it first) (HTTP 409, task_not_final)',
    );
    await world.siteA.play({ files: { 'a.txt': 'a', 'b.txt': 'b' } });
    const human = await pht(['task', 'delete', String(first.id)]);
    expect(human).toEqual({ code: 0, out: `task ${first.id} deleted with 1 run and 2 result files\n`, err: '' });

    const second = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    await world.client.cancelTask(second.id);
    const json = await pht(['task', 'delete', String(second.id), '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toEqual({ id: second.id, runs: 1, files: 0 });
    expect((await pht(['task', 'delete', 'abc'])).code).toBe(2);
  });
});
