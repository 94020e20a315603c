/**
 * What may leave a governed site, against the real Docker engine: size, file count, type and
 * small-cell rules; manual approval and rejection across a client restart; and an algorithm that
 * tries to smuggle rows out through file names, log lines and progress messages.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOfficerCommand } from '../../client/commands/index.js';
import { loadClientConfig, type ClientConfig } from '../../client/config.js';
import type { SiteClient } from '../../client/site-client.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { buildAndPushImage } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, E2E_REPO, Researcher, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/** Writes what its config asks for: files, log lines, progress messages. */
const ALGORITHM = `const fs = require('fs');
const path = require('path');
const cfg = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const out = process.env.PHT_OUTPUT_DIR;
for (const [name, content] of Object.entries(cfg.files || {})) {
  fs.mkdirSync(path.dirname(path.join(out, name)), { recursive: true });
  fs.writeFileSync(path.join(out, name), typeof content === 'string' ? content : JSON.stringify(content));
}
for (const line of cfg.log || []) console.log(line);
(cfg.progress || []).forEach((message, i) =>
  fs.appendFileSync(process.env.PHT_PROGRESS_FILE, JSON.stringify({ current: i + 1, total: cfg.progress.length, message }) + '\\n'));
`;

/** Rows of "patients" the smuggling algorithm tries to get out. */
const ROWS = ['ROW-1001-age67-hiv-positive', 'ROW-1002-age34-hiv-negative', 'ROW-1003-age51-hiv-positive'];
const SMUGGLER = {
  files: Object.fromEntries([['result.json', { patients: 3 }], ...ROWS.map((r) => [`${r}.json`, {}])]),
  log: ROWS.map((r) => `progress note ${r}`),
  progress: ROWS,
};

interface Site {
  name: string;
  configFile: string;
  config: ClientConfig;
  client: SiteClient;
}

describe('a governed site decides what may leave before any byte does', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let researcher: Researcher;
  const image = `${E2E_REPO}/gov-out-${crypto.randomBytes(4).toString('hex')}:1`;
  const sites: Site[] = [];

  async function officer(site: Site, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runOfficerCommand(
      [...argv, '--config', site.configFile],
      {},
      {
        out: (t) => (out += t + '\n'),
        err: (t) => (err += t + '\n'),
      },
    );
    return { code, out, err };
  }

  /** A site whose config file holds `policy`, as a hospital would write it. */
  async function site(policy: Record<string, unknown>): Promise<Site> {
    const name = uniqueSiteName('gov-out');
    const dir = makeTempDir('pht-gov-site-');
    const configFile = path.join(dir, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        registryUrl: registry.url,
        apiKey: await registry.createSite(name),
        sparqlEndpoint: sparql.url,
        allowedImages: [`${E2E_REPO.replace(/\./g, '\\.')}/.*`],
        workDir: path.join(dir, 'work'),
        network: { mode: 'none' },
        poll: { longPollSeconds: 5, cancelCheck: '500ms', maxBackoff: '1s' },
        limits: { timeout: '60s', memoryMb: 256 },
        policy,
      }),
    );
    const config = loadClientConfig(configFile, {});
    const s = { name, configFile, config, client: await startClient(config) };
    sites.push(s);
    return s;
  }

  async function restart(s: Site): Promise<void> {
    await s.client.close();
    s.client = await startClient(s.config);
  }

  async function post(s: Site, config: unknown) {
    return researcher.post(image, config, [s.name]);
  }

  async function finished(taskId: number) {
    return (await researcher.waitDone(taskId)).runs[0]!;
  }

  beforeAll(async () => {
    registry = await startTestRegistry();
    sparql = await startSparqlServer({ host: '127.0.0.1', turtle: '<urn:p1> <urn:age> 40 .' });
    researcher = new Researcher(registry, await registry.createUser('alice'));
    await buildAndPushImage(image, { 'main.js': ALGORITHM }, { cmd: ['/app/main.js'] });
  });

  afterAll(async () => {
    await Promise.all(sites.map((s) => s.client.close()));
    for (const s of sites) await cleanupSite(s.name);
    await sparql?.close();
    await registry?.destroy();
  });

  it('refuses output over the file count, the size, or of a type not allowed, and sends nothing', async () => {
    const s = await site({ output: { default: { maxFiles: 2, maxBytes: 1000, allowedTypes: ['json', 'csv'] } } });
    const many = await finished((await post(s, { files: { 'a.json': {}, 'b.json': {}, 'c.json': {} } })).id);
    expect(many.status).toBe('rejected');
    expect(many.reason).toBe('output policy: 3 files, at most 2 may leave');
    expect(await researcher.files(many.id)).toEqual([]);
    const big = await finished((await post(s, { files: { 'a.json': 'x'.repeat(1500) } })).id);
    expect(big.reason).toBe('output policy: 1500 bytes, at most 1000 may leave');
    const typed = await finished((await post(s, { files: { 'a.json': {}, 'notes.txt': 'free text' } })).id);
    expect(typed.status).toBe('rejected');
    expect(typed.reason).toBe('output policy: file type not allowed for 1 file(s) (notes.txt); allowed: json, csv');
    expect(await researcher.files(typed.id)).toEqual([]);
    const fine = await finished((await post(s, { files: { 'a.json': { n: 40 }, 'b.csv': 'x,count\n1,20\n' } })).id);
    expect(fine.status, fine.reason ?? '').toBe('completed');
    expect((await researcher.files(fine.id)).map((f) => f.name)).toEqual(['a.json', 'b.csv']);
  });

  it('suppresses results with a count below the minimum, or holds them for review when configured', async () => {
    const suppress = await site({ output: { default: { minCellCount: 10 } } });
    const table = 'age_group,count\n40-49,3\n50-59,25\n';
    const suppressed = await finished((await post(suppress, { files: { 'counts.csv': table } })).id);
    expect(suppressed.status).toBe('rejected');
    expect(suppressed.reason).toBe(
      'output policy: counts.csv has counts below 10 (row 2, column count = 3); results suppressed',
    );
    expect(await researcher.files(suppressed.id)).toEqual([]);
    const json = await finished(
      (await post(suppress, { files: { 'r.json': { byAge: [{ n: 12 }, { n: 4 }], version: 1 } } })).id,
    );
    expect(json.reason).toContain('r.json has counts below 10 (byAge[1].n = 4)');

    const hold = await site({ output: { default: { minCellCount: 10, smallCells: 'hold' } } });
    const task = await post(hold, { files: { 'counts.csv': table } });
    const waiting = await researcher.waitForRunStatus(task.id, 'awaiting_approval');
    const review = await officer(hold, 'review', String(waiting.runs[0]!.id));
    expect(review.code, review.err).toBe(0);
    expect(review.out).toContain('why held:   output policy: counts.csv has counts below 10');
    expect(review.out).toContain('      | 40-49,3');
  });

  it('holds everything under manual approval, and an approval given while the client is down sends it at the next start', async () => {
    const s = await site({ output: { default: { review: 'manual' } } });
    const task = await post(s, {
      files: { 'result.json': { mean: 47.5 } },
      log: ['computing the mean'],
      progress: ['half'],
    });
    const runId = (await researcher.waitForRunStatus(task.id, 'awaiting_approval')).runs[0]!.id;
    const run = await researcher.call('GET', `/runs/${runId}`);
    expect(run.json).toMatchObject({ status: 'awaiting_approval', progress: null });
    expect(await researcher.log(runId)).toBe('');
    expect(await researcher.files(runId)).toEqual([]);

    const review = await officer(s, 'review', String(runId));
    expect(review.out).toContain('why held:   the site reviews every result before it leaves (manual approval)');
    expect(review.out).toContain('    result.json  13 bytes');
    expect(review.out).toContain('      | {"mean":47.5}');
    expect(review.out).toContain('      | computing the mean');
    expect(review.out).toContain('"message":"half"');

    await s.client.close();
    const approved = await officer(s, 'approve', String(runId));
    expect(approved.code, approved.err).toBe(0);
    expect((await officer(s, 'approve', String(runId))).code).toBe(1);
    s.client = await startClient(s.config);
    const done = await finished(task.id);
    expect(done.status, done.reason ?? '').toBe('completed');
    expect(await researcher.file(runId, 'result.json')).toBe('{"mean":47.5}');
    expect(await researcher.log(runId)).toContain('computing the mean');

    const audit = await officer(s, 'audit', '--run', String(runId), '--json');
    expect(JSON.parse(audit.out)).toMatchObject({
      held: { reason: 'the site reviews every result before it leaves (manual approval)' },
      review: { decision: 'approved' },
      filesSent: [{ name: 'result.json', bytes: 13 }],
      reported: { state: 'completed' },
    });
    expect((await officer(s, 'audit', 'verify')).code).toBe(0);
  });

  it('stops a smuggling algorithm: held under review, then rejected after a restart, nothing of the rows ever leaves', async () => {
    const s = await site({ output: { default: { review: 'manual' } } });
    const task = await post(s, SMUGGLER);
    const runId = (await researcher.waitForRunStatus(task.id, 'awaiting_approval')).runs[0]!.id;
    await restart(s);
    const review = await officer(s, 'review', String(runId));
    for (const row of ROWS) expect(review.out).toContain(row);
    const rejected = await officer(s, 'reject', String(runId), '--reason', 'rows of patient data in names and logs');
    expect(rejected.code, rejected.err).toBe(0);
    const done = await finished(task.id);
    expect(done.status).toBe('rejected');
    expect(done.reason).toMatch(/^rejected by the site's officer .+: rows of patient data in names and logs$/);
    const seen = JSON.stringify([
      await researcher.log(runId),
      await researcher.files(runId),
      (await researcher.call('GET', `/runs/${runId}`)).json,
      (await researcher.call('GET', `/tasks/${task.id}`)).json,
    ]);
    for (const row of ROWS) expect(seen).not.toContain(row);
    expect(JSON.parse((await officer(s, 'audit', '--run', String(runId), '--json')).out)).toMatchObject({
      review: { decision: 'rejected', reason: 'rows of patient data in names and logs' },
      filesSent: [],
    });
  });

  it('stops a smuggling algorithm under an automatic policy: logs and progress withheld, names refused', async () => {
    const s = await site({
      output: { default: { maxFiles: 1, allowedTypes: ['json'], logs: 'withhold', progress: 'withhold' } },
    });
    const task = await post(s, SMUGGLER);
    const done = await finished(task.id);
    expect(done.status).toBe('rejected');
    expect(done.reason).toBe('output policy: 4 files, at most 1 may leave');
    const seen = JSON.stringify([await researcher.log(done.id), await researcher.files(done.id), done]);
    for (const row of ROWS) expect(seen).not.toContain(row);
    expect(done.progress).toBeNull();

    const capped = await site({ output: { default: { logBytes: 40 } } });
    const cappedRun = await finished((await post(capped, { log: ROWS, files: { 'r.json': {} } })).id);
    expect(cappedRun.status).toBe('completed');
    const log = await researcher.log(cappedRun.id);
    expect(Buffer.byteLength(log)).toBeLessThanOrEqual(40);
    expect(log).not.toContain(ROWS[1]!);
  });
});
