/**
 * The dashboard at consortium scale: a registry holding 10,000 tasks and 500 sites (one task sent
 * to every site), opened in Debian's chromium through playwright-core.
 *
 * Figures (median of --rounds, each in a fresh browser page):
 * - first useful paint: from navigation to /ui/ (signed in: the token already in the tab's
 *   session) to the first page of the task list on screen, cold (first load, empty cache) and warm;
 * - open a task with 500 runs: from the click on the task to its 500 run rows on screen;
 * - the sites screen with 500 sites and their run counts: its first page of 50, the next page, a
 *   filter by organization; with `--baseline GIT_REF`, the same screen of that commit (which drew
 *   every site at once) in the same browser on the same data, for comparison;
 * - the API calls behind them, timed from Node, with their answer sizes.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openStore } from '../master/server.js';
import type { Principal } from '../master/store/registry-store.js';
import { buildBaseline, removeBuild, type Build } from './lib/baseline.js';
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
/** The dashboard's sites page size (ui/src/views/Sites.tsx). */
const SITES_PAGE = 50;
/** Sites the seed puts in one organization, for the filter. */
const ORGANIZATION = { name: 'Umc-Bench', sites: 20 };

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
    await store.createOrganization(ORGANIZATION.name);
    for (const site of sites.slice(0, Math.min(ORGANIZATION.sites, siteCount)))
      await store.setOrganization('site', site.name, ORGANIZATION.name);
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

const DEFAULTS = { tasks: 10_000, sites: 500, rounds: 7, baseline: '' };

/** The command that ran, as the report gives it: the options that differ from the defaults. */
function commandLine(options: typeof DEFAULTS): string {
  const given = (Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[])
    .filter((k) => options[k] !== DEFAULTS[k])
    .map((k) => `--${k} ${options[k]}`);
  return `npm run bench:dashboard${given.length ? ` -- ${given.join(' ')}` : ''}`;
}

/** A baseline commit's registry and dashboard, built in a temporary directory. */
function buildBaselineWithDashboard(ref: string): Build {
  const build = buildBaseline(ref);
  execFileSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '-c', 'ui/vite.config.mjs'], {
    cwd: build.root,
    stdio: 'inherit',
  });
  return build;
}

/** The sites screen of a baseline commit, which drew every site at once: from the click to the last row. */
async function baselineSitesScreen(
  browser: Browser,
  url: string,
  token: string,
  siteCount: number,
  rounds: number,
): Promise<number[]> {
  const samples: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    const page = await signedInPage(browser, token);
    await page.goto(`${url}/ui/#/tasks`);
    await page.getByRole('row').nth(25).waitFor();
    const t = performance.now();
    await page.getByRole('link', { name: 'Sites', exact: true }).click();
    await page.getByRole('row').nth(siteCount).waitFor();
    // The first round warms the browser up (as in this checkout's rounds, where the task list does).
    if (round > 0) samples.push(performance.now() - t);
    await page.context().close();
  }
  return samples;
}

async function main(args: BenchArgs): Promise<void> {
  const taskCount = args.number('tasks', DEFAULTS.tasks);
  const siteCount = args.number('sites', DEFAULTS.sites);
  const rounds = args.number('rounds', DEFAULTS.rounds);
  const baselineRef = args.string('baseline', DEFAULTS.baseline);
  if (siteCount <= SITES_PAGE * 2) throw new Error(`--sites must be over ${SITES_PAGE * 2} (two pages and more)`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-dashboard-'));
  console.log(`seeding ${taskCount} tasks at ${siteCount} sites…`);
  const seeded = await seed(dataDir, taskCount, siteCount);
  console.log(`seeded ${seeded.runs} runs in ${(seeded.seedMs / 1000).toFixed(1)} s`);
  // Built before anything is timed, so the build's CPU does not weigh on the figures.
  const baseline = baselineRef ? buildBaselineWithDashboard(baselineRef) : null;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  let registry = await startRegistryProcess({ dataDir });
  try {
    const base = `${registry.url}/api/v1`;
    const api = {
      list: await timeApi(`${base}/task-summaries?limit=25&offset=0`, seeded.adminToken, rounds * 3),
      big: await timeApi(`${base}/tasks/${seeded.bigTaskId}`, seeded.adminToken, rounds * 3),
      sites: await timeApi(`${base}/sites/activity?limit=${SITES_PAGE}`, seeded.adminToken, rounds * 3),
      sitesAll: await timeApi(`${base}/sites/activity?limit=${siteCount}`, seeded.adminToken, rounds * 3),
      fullList: await timeApi(`${base}/tasks?limit=25&offset=0`, seeded.adminToken, rounds * 3),
    };

    const firstPaint: number[] = [];
    const openTask: number[] = [];
    const sitesScreen: number[] = [];
    const sitesNext: number[] = [];
    const sitesFilter: number[] = [];
    let cold = NaN;
    const organizationSites = Math.min(ORGANIZATION.sites, siteCount);
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

      const pager = page.getByRole('navigation', { name: 'Pages' });
      t = performance.now();
      await page.getByRole('link', { name: 'Sites', exact: true }).click();
      await pager.getByText(`1–${SITES_PAGE} of ${siteCount}`).waitFor();
      await page.getByRole('row').nth(SITES_PAGE).waitFor();
      sitesScreen.push(performance.now() - t);

      t = performance.now();
      await pager.getByRole('link', { name: 'Next page' }).click();
      await pager.getByText(`${SITES_PAGE + 1}–${Math.min(2 * SITES_PAGE, siteCount)} of ${siteCount}`).waitFor();
      sitesNext.push(performance.now() - t);

      t = performance.now();
      await page.getByLabel('Search sites').fill(ORGANIZATION.name.toLowerCase());
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.getByText(`${organizationSites} sites match,`).waitFor();
      await page.getByRole('row').nth(organizationSites).waitFor();
      sitesFilter.push(performance.now() - t);
      await page.context().close();
    }

    let baselineSites: number[] | null = null;
    let baselineApi: { ms: number[]; bytes: number } | null = null;
    if (baseline) {
      // The same data, served by the baseline commit's registry and dashboard.
      await registry.stop({ keepData: true });
      // A log of its own: the port is read from the log's "registry listening" line.
      registry = await startRegistryProcess({ dataDir, root: baseline.root, logName: 'baseline-registry.log' });
      baselineApi = await timeApi(`${registry.url}/api/v1/sites/activity`, seeded.adminToken, rounds * 3);
      baselineSites = await baselineSitesScreen(browser, registry.url, seeded.adminToken, siteCount, rounds);
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
        `${siteCount} sites (${organizationSites} of them in one organization) and ` +
        `${seeded.runs.toLocaleString('en')} runs in every state (one task in 1,000 ` +
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
          row(
            `sites screen: the first ${SITES_PAGE} of ${siteCount} sites with their run counts`,
            sitesScreen,
            'from the click',
          ),
          row(`sites screen: the next page`, sitesNext, 'from the click'),
          row(
            `sites screen: filtered by organization (${organizationSites} sites)`,
            sitesFilter,
            'from the click on Filter',
          ),
          ...(baselineSites && baseline
            ? [
                row(
                  `${baseline.label}: sites screen, all ${siteCount} sites at once`,
                  baselineSites,
                  'from the click (before paging)',
                ),
              ]
            : []),
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
          apiRow(`GET /sites/activity?limit=${SITES_PAGE} (a page of sites with counts)`, api.sites),
          apiRow(`GET /sites/activity?limit=${siteCount} (every site in one page)`, api.sitesAll),
          ...(baselineApi && baseline
            ? [apiRow(`${baseline.label}: GET /sites/activity (every site, unpaged)`, baselineApi)]
            : []),
          apiRow('GET /tasks?limit=25 (for comparison: every run of every task)', api.fullList),
        ],
      ),
      '',
      'How it stays fast: the list asks for one page of summaries (run counts come from the ' +
        '(task_id, status) index in one query for the page, no run rows); a task is one request ' +
        'and then one event stream (no request per run); the run grid re-renders only rows whose run ' +
        `changed; the sites screen asks for one page of ${SITES_PAGE} sites (filtered by the registry, ` +
        'counts from the (site_id, status) index), so the browser draws 50 rows instead of every site.',
    ].join('\n');
    console.log(`\n${body}`);
    writeSection({
      id: 'dashboard',
      title: 'Dashboard: first paint, a 500-run task, the sites screen',
      command: commandLine({ tasks: taskCount, sites: siteCount, rounds, baseline: baselineRef }),
      body,
    });
  } finally {
    await browser.close();
    await registry.stop();
    if (baseline) removeBuild(baseline);
  }
}

runMain(
  {
    usage:
      'Usage: node dist/bench/dashboard.js [--tasks 10000] [--sites 500] [--rounds 7] [--baseline GIT_REF]\n  The dashboard in chromium against a registry holding many tasks and sites; with --baseline, the\n  sites screen of that commit too, on the same data.',
    options: { tasks: 'value', sites: 'value', rounds: 'value', baseline: 'value' },
  },
  main,
);
