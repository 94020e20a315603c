import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { GovernedRegistryApi } from '../../client/policy/governed-api.js';
import { SiteGovernance } from '../../client/policy/site-governance.js';
import { compileSitePolicy, NO_POLICY, type SitePolicy } from '../../client/policy/site-policy.js';
import { RunWorkspace } from '../../client/run-workspace.js';
import { silentLogger } from '../../shared/logger.js';
import type { RunAssignment } from '../../shared/types.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const run = { id: 7, taskId: 3, image: '127.0.0.1:5050/pht/stats:1', config: {}, attempt: 1 } as RunAssignment;

describe('site governance in the run path', () => {
  const dirs: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  function setUp(policy: SitePolicy) {
    const workDir = makeTempDir('pht-governance-');
    dirs.push(workDir);
    const ws = RunWorkspace.create(workDir, 'site-a', run);
    const governance = new SiteGovernance({
      policy,
      // Not reached: no signatures are required in these policies.
      api: undefined as unknown as GovernedRegistryApi,
      workDir,
      audit: () => silentLogger(),
      logger: silentLogger(),
    });
    return { ws, governance };
  }

  it('lets a run through at a site without a policy without touching its workspace, also for every log chunk', async () => {
    const { ws, governance } = setUp(NO_POLICY);
    const touched: string[] = [];
    for (const name of ['readFileSync', 'openSync', 'writeFileSync', 'mkdirSync'] as const) {
      const original = fs[name] as (...a: unknown[]) => unknown;
      vi.spyOn(fs, name).mockImplementation(((...args: unknown[]) => {
        touched.push(`${name} ${String(args[0])}`);
        return original(...args);
      }) as never);
    }
    await expect(governance.beforePull(ws)).resolves.toEqual({ allowed: true });
    // What the governed API asks before each log chunk and progress report.
    expect(governance.lookup(run.id)).toBeNull();
    expect(touched.filter((t) => t.includes(ws.dir))).toEqual([]);
    expect(fs.existsSync(path.join(ws.dir, 'review'))).toBe(false);
  });

  it('gives a run the output rules of its requested image from its workspace', async () => {
    const policy = compileSitePolicy(
      { output: { default: { logs: 'withhold' }, byImage: [{ image: '.*/pht/stats:1', logBytes: 100 }] } },
      null,
    );
    const { ws, governance } = setUp(policy);
    await expect(governance.beforePull(ws)).resolves.toEqual({ allowed: true });
    expect(governance.lookup(run.id)?.rules).toEqual({ logs: 'withhold', logBytes: 100 });
    expect(governance.lookup(run.id + 1)).toBeNull();
  });
});
