/**
 * The dashboard at consortium scale: a registry holding 10,000 tasks and 500 sites (one task sent
 * to every site), opened in Debian's chromium through playwright-core.
 *
 * Figures (median of --rounds, each in a fresh browser page):
 * - first useful paint: from navigation to /ui/ (signed in: the token already in the tab's
 *   session) to the first page of the task list on screen, cold (first load, empty cache) and warm;
 * - open a task with 500 runs: from the click on the task to its 500 run rows on screen;
 * - the sites screen with 500 sites and their run counts;
 * - the API calls behind them, timed from Node, with their answer sizes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openStore } from '../master/server.js';
import type { Principal } from '../master/store/registry-store.js';
import { startRegistryProcess } from './lib/registry-process.js';
import { writeSection } from './lib/report.js';
import { ms, summarize, table } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const IMAGE = '127.0.0.1:5050/pht-bench/analysis:1';

interface Seeded {
  adminToken: string;
  bigTaskId: number;
  runs: number;
  seedMs: number;
}

/** Fills a registry's store directly: sites, researchers, tasks, and runs in every state. */
async function seed(dataDir: string, taskCount: number, siteCount: number): Promise<Seeded> {
  const started = performance.now();
  const store = await openStore({ dataDir });
  try {
    const sites: Principal[] = [];
    for (let i = 0; i < siteCount; i++)
      sites.push((await store.createPrincipal('site', `hospital-${String(i).padStart(3, '0')}`, 'site')).principal);
    const admin = await store.createPrincipal('user', 'bench-admin', 'admin');
    const owners: Principal[] = [];
    for (let i = 0; i < 20; i++)
      owners.push((await store.createPrincipal('user', `researcher-${i}`, 'researcher')).principal);
    let runs = 0;
    let bigTaskId = 0;
    // A deterministic mix: most tasks go to 1 to 8 sites, one in 1,000 to every site.
    let x = 12345;
    const random = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let t = 0; t < taskCount; t++) {
      const all = t % 1000 === 500;
      const n = all ? siteCount : 1 + Math.floor(random() * 8);
      const first = Math.floor(random() * siteCount);
      const targets = all ? null : Array.from({ length: n }, (_, k) => sites[(first + k * 37) % siteCount]!.name);
      const task = await store.createTask(owners[t % owners.length]!, {
        name: `analysis ${t} ${['age', 'bmi', 'survival', 'regression'][t % 4]}`,
        image: IMAGE,
        config: Buffer.from('{"rounds":3}'),
        configType: 'application/json',
        sites: targets ? [...new Set(targets)] : null,
      });
      runs += task.runs.length;
      if (all) bigTaskId = task.id;
    }
    // Every site works through its queue oldest first until only the newest tasks remain queued:
    // a mix of completed, failed and rejected runs, some running with progress.
    const bigTask = await store.getTask(bigTaskId);
    for (const [i, site] of sites.entries()) {
      for (;;) {
        const run = await store.claimNextRun(site.id, 60_000);
        if (!run) break;
        if (run.taskId > taskCount - 300 && run.taskId !== bigTaskId) break;
        if (i % 17 === 0) {
          await store.finishRun(site.id, run.id, { state: 'rejected', reason: 'image not in the allowlist' });
          continue;
        }
        await store.startRun(site.id, run.id);
        await store.reportProgress(site.id, run.id, { current: 3, total: 5, message: 'fitting' });
        if (run.taskId === bigTaskId && i % 3 === 0) break; // left running, with progress
        await store.finishRun(site.id, run.id, {
          state: i % 11 === 0 ? 'failed' : 'completed',
          exitCode: i % 11 === 0 ? 1 : 0,
          digest: `${IMAGE.split(':1')[0]}@sha256:${'ab'.repeat(32)}`,
          durationMs: 1000 + i,
        });
      }
    }
    if (!bigTask) throw new Error('no task was sent to every site');
    return { adminToken: admin.secret, bigTaskId, runs, seedMs: performance.now() - started };
  } finally {
    await store.close();
  }
}

async function timeApi(url: string, token: string, rounds: number): Promise<{ ms: number[]; bytes: number }> {
  const samples: number[] = [];
  let bytes = 0;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const body = await res.arrayBuffer();
    samples.push(performance.now() - t);
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    bytes = body.byteLength;
  }
  return { ms: samples, bytes };
}

/** A page in a fresh browser context whose tab session already holds the token (a signed-in reload). */
async function signedInPage(browser: Browser, token: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(`sessionStorage.setItem('pht.token', ${JSON.stringify(token)})`);
  return context.newPage();
}

async function main(args: BenchArgs): Promise<void> {
  const taskCount = args.number('tasks', 10_000);
  const siteCount = args.number('sites', 500);
  const rounds = args.number('rounds', 7);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-dashboard-'));
  console.log(`seeding ${taskCount} tasks at ${siteCount} sites…`);
  const seeded = await seed(dataDir, taskCount, siteCount);
  console.log(`seeded ${seeded.runs} runs in ${(seeded.seedMs / 1000).toFixed(1)} s`);
  const registry = await startRegistryProcess({ dataDir });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  try {
    const base = `${registry.url}/api/v1`;
    const api = {
      list: await timeApi(`${base}/task-summaries?limit=25&offset=0`, seeded.adminToken, rounds * 3),
      big: await timeApi(`${base}/tasks/${seeded.bigTaskId}`, seeded.adminToken, rounds * 3),
      sites: await timeApi(`${base}/sites/activity`, seeded.adminToken, rounds * 3),
      fullList: await timeApi(`${base}/tasks?limit=25&offset=0`, seeded.adminToken, rounds * 3),
    };

    const firstPaint: number[] = [];
    const openTask: number[] = [];
    const sitesScreen: number[] = [];
    let cold = NaN;
    for (let round = 0; round < rounds; round++) {
      const page = await signedInPage(browser, seeded.adminToken);
      // Each context has its own HTTP cache: every round loads the page cold. The first round also
      // pays for the browser's own start-up work, and is reported apart.
      let t = performance.now();
      await page.goto(`${registry.url}/ui/#/tasks`);
      await page.getByRole('row').nth(25).waitFor();
      const paint = performance.now() - t;
      if (round === 0) cold = paint;
      else firstPaint.push(paint);

      t = performance.now();
      // The task is not on the first page: follow a link to it as the list's links do.
      await page.evaluate(`location.hash = '#/tasks/${seeded.bigTaskId}'`);
      await page.getByRole('row').nth(siteCount).waitFor();
      openTask.push(performance.now() - t);

      t = performance.now();
      await page.getByRole('link', { name: 'Sites', exact: true }).click();
      await page.getByRole('row').nth(siteCount).waitFor();
      sitesScreen.push(performance.now() - t);
      await page.context().close();
    }

    const row = (what: string, samples: number[], note = '') => {
      const s = summarize(samples);
      return [what, ms(s.median), ms(s.p95), ms(s.max), s.n, note];
    };
    const apiRow = (what: string, r: { ms: number[]; bytes: number }) => {
      const s = summarize(r.ms);
      return [what, ms(s.median), ms(s.p95), `${(r.bytes / 1024).toFixed(0)} KiB`];
    };
    const body = [
      `A registry (one \`node master\` process, SQLite) holding ${taskCount.toLocaleString('en')} tasks, ` +
        `${siteCount} sites and ${seeded.runs.toLocaleString('en')} runs in every state (one task in 1,000 ` +
        `sent to every site), opened by an admin (who sees everything) in Debian's chromium ` +
        `(headless, driven by playwright-core, 1280×800). Each round is a new browser context (empty cache, ` +
        `token already in the tab's session). Times are wall clock from the driver, including its polling; ` +
        `on a machine as loaded as the one recorded above (other work waiting for a CPU most of the time), ` +
        `read them as upper bounds.`,
      '',
      table(
        ['screen', 'median ms', 'p95 ms', 'max ms', 'rounds', ''],
        [
          ['first useful paint, first round (browser warming up)', ms(cold), '', '', 1, ''],
          row(
            `first useful paint: the first 25 tasks of ${taskCount.toLocaleString('en')} on screen`,
            firstPaint,
            'cold page load',
          ),
          row(`open a task with ${siteCount} runs: every run row on screen`, openTask, 'from following its link'),
          row(`sites screen: ${siteCount} sites with their run counts`, sitesScreen, 'from the click'),
        ],
      ),
      '',
      'The API calls behind these screens (Node fetch on loopback, admin token):',
      '',
      table(
        ['call', 'median ms', 'p95 ms', 'answer'],
        [
          apiRow('GET /task-summaries?limit=25 (the list: run counts, no runs)', api.list),
          apiRow(`GET /tasks/:id (the task with ${siteCount} runs)`, api.big),
          apiRow(`GET /sites/activity (${siteCount} sites with counts)`, api.sites),
          apiRow('GET /tasks?limit=25 (for comparison: every run of every task)', api.fullList),
        ],
      ),
      '',
      'How it stays fast: the list asks for one page of summaries (run counts come from the ' +
        '(task_id, status) index in one query for the page, no run rows); a task is one request ' +
        'and then one event stream (no request per run); the run grid re-renders only rows whose run ' +
        'changed; the sites screen is one request (counts from the (site_id, status) index).',
    ].join('\n');
    console.log(`\n${body}`);
    writeSection({
      id: 'dashboard',
      title: 'Dashboard: first paint and a 500-run task',
      command: 'npm run bench:dashboard',
      body,
    });
  } finally {
    await browser.close();
    await registry.stop();
  }
}

runMain(
  {
    usage:
      'Usage: node dist/bench/dashboard.js [--tasks 10000] [--sites 500] [--rounds 7]\n  The dashboard in chromium against a registry holding many tasks and sites.',
    options: { tasks: 'value', sites: 'value', rounds: 'value' },
  },
  main,
);
