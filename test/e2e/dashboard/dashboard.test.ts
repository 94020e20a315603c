import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SiteClient } from '../../../client/site-client.js';
import { ResultFileStore } from '../../../master/result-files.js';
import { expireDue } from '../../../master/retention.js';
import { startSparqlServer, type RunningSparqlServer } from '../../../demo/sparql-server.js';
import type { Task } from '../../../shared/types.js';
import { buildAndPushImage } from '../../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, Researcher, startClient, uniqueSiteName } from '../site-harness.js';
import { launchBrowser, screenshot, seriousA11yViolations, type Browser } from './browser.js';

const STEPPER = `${E2E_REPO}/dashboard-stepper:1`;
const stepperSource = fs.readFileSync(path.join(__dirname, 'images', 'stepper', 'main.js'), 'utf8');
const UNTIMED = { timeout: 60_000, interval: 100 };

/**
 * The dashboard in a real browser against a real registry, a real site client and the real Docker
 * engine: what a researcher and an admin do, found by role and label as a person finds them.
 */
describe('dashboard in a real browser', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let browser: Browser;
  let page: Page;
  let researcher: Researcher;
  let researcherToken: string;
  let adminToken: string;
  let site: string;
  let idleSite: string;
  let client: SiteClient | null = null;
  let siteKey: string;
  let stepperTask: Task;

  beforeAll(async () => {
    registry = await startTestRegistry();
    sparql = await startSparqlServer({ host: '127.0.0.1', turtle: '<urn:p1> <urn:age> 40 .' });
    researcherToken = await registry.createUser('rita');
    adminToken = await registry.createUser('ada', 'admin');
    researcher = new Researcher(registry, researcherToken);
    site = uniqueSiteName('ui');
    idleSite = uniqueSiteName('idle');
    siteKey = await registry.createSite(site);
    await registry.createSite(idleSite);
    await buildAndPushImage(STEPPER, { 'main.js': stepperSource }, { cmd: ['/app/main.js'] });
    browser = await launchBrowser();
    page = browser.page;
  });

  afterAll(async () => {
    await browser?.close();
    await client?.close();
    await cleanupSite(site);
    await sparql?.close();
    await registry?.destroy();
  });

  async function expectAccessible(screen: string): Promise<void> {
    expect(await seriousA11yViolations(page), `serious or critical axe violations on ${screen}`).toEqual([]);
  }

  async function signIn(token: string): Promise<void> {
    await page.goto(`${registry.url}/`);
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Tasks' }).waitFor();
  }

  /** The row of a site in a task's run grid. */
  const runRow = (siteName: string) =>
    page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: siteName }) });

  it('signs in through the Token field, refusing an unknown token and keeping the token out of URLs and cookies', async () => {
    await page.goto(`${registry.url}/`);
    expect(new URL(page.url()).pathname).toBe('/ui/');
    await page.getByRole('heading', { name: 'PHT registry' }).waitFor();
    await expectAccessible('the sign-in screen');
    await screenshot(page, 'sign-in');
    await page.getByLabel('Token').fill('pht_user_not-a-real-token-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent(), UNTIMED).toContain('not known');
    await page.getByLabel('Token').fill(siteKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent(), UNTIMED).toContain('site key');

    await signIn(researcherToken);
    expect(page.url()).not.toContain(researcherToken);
    expect(await browser.context.cookies()).toEqual([]);
    expect(await page.evaluate("sessionStorage.getItem('pht.token')")).toBe(researcherToken);
    expect(await page.evaluate('localStorage.length')).toBe(0);
    // A reload of the tab keeps the session; nothing else does (a new tab's session is empty).
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Tasks' }).waitFor();
    const other = await browser.context.newPage();
    await other.goto(`${registry.url}/ui/`);
    await other.getByLabel('Token').waitFor();
    await other.close();
  });

  it('shows a task going from queued to completed with a live progress bar', async () => {
    stepperTask = await researcher.post(STEPPER, { rounds: 1 }, [site]);
    await page.getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('link', { name: `#${stepperTask.id}` }).click();
    await page.getByRole('heading', { level: 1, name: `Task #${stepperTask.id}` }).waitFor();
    await expect.poll(() => runRow(site).getByText('queued').count(), UNTIMED).toBe(1);
    await expectAccessible('a queued task');

    // Only now does the site come online: the page follows without being reloaded.
    client = await startClient(clientConfig(registry.url, siteKey, sparql.url));
    const bar = page.getByRole('progressbar', { name: `Progress at ${site}` });
    await expect.poll(() => bar.getAttribute('value'), UNTIMED).toBe('1');
    expect(await bar.getAttribute('max')).toBe('2');
    await expect.poll(() => runRow(site).textContent(), UNTIMED).toContain('waiting for go');
    expect(await runRow(site).getByText('running').count()).toBe(1);
    await expectAccessible('a running task');
    await screenshot(page, 'task-running');

    sparql.store.update(`INSERT DATA { <urn:pht-e2e:task:${stepperTask.id}> <urn:pht-e2e:go> true }`);
    await expect.poll(() => runRow(site).getByText('completed').count(), UNTIMED).toBe(1);
    await expect.poll(() => bar.getAttribute('value'), UNTIMED).toBe('2');
    const row = (await runRow(site).textContent()) ?? '';
    expect(row).toContain('sha256:');
    expect(await runRow(site).getByRole('cell', { name: '0', exact: true }).count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Cancel task' }).count()).toBe(0);
  });

  it("opens the run's log and downloads its result file", async () => {
    await runRow(site)
      .getByRole('link', { name: `Log and files of the run at ${site}` })
      .click();
    await page.getByRole('heading', { level: 1, name: new RegExp(`^Run \\d+ at ${site}$`) }).waitFor();
    const log = page.getByRole('region', { name: 'Log' });
    await expect.poll(() => log.textContent(), UNTIMED).toContain('stepper: result written');
    await page.getByRole('cell', { name: 'result.json' }).waitFor();
    await expectAccessible('a run with its log and files');
    await screenshot(page, 'run-log-and-files');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download result.json' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('result.json');
    const saved = await download.path();
    expect(JSON.parse(fs.readFileSync(saved, 'utf8'))).toEqual({ answer: 42 });
  });

  it('says on the run screen that retention removed the log and the files, without asking for them', async () => {
    const runId = stepperTask.runs[0]!.id;
    const later = new Date(Date.now() + 2 * 86_400_000);
    const day = { logsMs: 86_400_000, filesMs: 86_400_000, intervalMs: 3_600_000, batch: 500 };
    expect(await expireDue(registry.store, new ResultFileStore(registry.dataDir), day, later)).toMatchObject({
      logs: 1,
      fileRuns: 1,
    });
    const asked: string[] = [];
    const onRequest = (req: { url(): string }) => asked.push(new URL(req.url()).pathname);
    page.on('request', onRequest);
    try {
      await page.goto(`${registry.url}/ui/#/runs/${runId}`);
      await page.reload();
      await page.getByRole('heading', { level: 1, name: `Run ${runId} at ${site}` }).waitFor();
      const log = page.getByRole('region', { name: 'Log' });
      const files = page.getByRole('region', { name: 'Result files' });
      await expect.poll(() => log.textContent(), UNTIMED).toContain("The registry's retention removed this log");
      await expect.poll(() => files.textContent(), UNTIMED).toContain('removed this run');
      expect(await page.getByRole('alert').count()).toBe(0);
      await expectAccessible('a run whose log and files expired');
    } finally {
      page.off('request', onRequest);
    }
    expect(asked).toContain(`/api/v1/runs/${runId}`);
    expect(asked.filter((p) => p.startsWith(`/api/v1/runs/${runId}/`))).toEqual([]);
  });

  it('cancels a task from its page', async () => {
    const task = await researcher.post(STEPPER, {}, [idleSite]);
    await page.goto(`${registry.url}/ui/#/tasks/${task.id}`);
    await page.getByRole('heading', { level: 1, name: `Task #${task.id}` }).waitFor();
    await page.getByRole('button', { name: 'Cancel task' }).click();
    await expect.poll(() => runRow(idleSite).textContent(), UNTIMED).toContain('cancelled by the researcher');
    expect(await runRow(idleSite).getByText('cancelled').count()).toBeGreaterThan(0);
    expect((await researcher.call('GET', `/tasks/${task.id}`)).json.status).toBe('cancelled');
  });

  it("shows a rejected run's reason", async () => {
    const task = await researcher.post('127.0.0.1:5050/not-allowed/analysis:1', {}, [site]);
    await page.goto(`${registry.url}/ui/#/tasks/${task.id}`);
    await expect.poll(() => runRow(site).getByText('rejected').count(), UNTIMED).toBe(1);
    await expect.poll(() => runRow(site).textContent(), UNTIMED).toContain("matches no entry of the site's allowlist");
    await screenshot(page, 'task-rejected');
  });

  it('creates a task from the form, showing a validation error inline first', async () => {
    await page.getByRole('link', { name: 'New task' }).first().click();
    await page.getByRole('heading', { level: 1, name: 'New task' }).waitFor();
    await page.getByLabel('Image').fill(STEPPER);
    await page.getByLabel('Name (optional)').fill('from the form');
    await page.getByRole('radio', { name: /Chosen sites/ }).check();
    await page.getByRole('checkbox', { name: idleSite }).check();
    const config = page.getByLabel('Config (JSON)');
    await config.fill('{"rounds": 3,');
    await page.getByRole('button', { name: 'Create task' }).click();
    await expect.poll(() => config.getAttribute('aria-invalid'), UNTIMED).toBe('true');
    const describedBy = (await config.getAttribute('aria-describedby')) ?? '';
    expect(await page.locator(`#${describedBy}`).textContent()).toContain('not valid JSON');
    expect(page.url()).toContain('#/tasks/new');
    await expectAccessible('the task form with an error');
    await screenshot(page, 'new-task-error');

    await config.fill('{"rounds": 3}');
    await page.getByRole('button', { name: 'Create task' }).click();
    await page.getByRole('heading', { level: 1, name: /^Task #\d+: from the form$/ }).waitFor();
    const id = Number(/#\/tasks\/(\d+)/.exec(page.url())?.[1]);
    const created = (await researcher.call('GET', `/tasks/${id}`)).json as Task;
    expect(created).toMatchObject({ name: 'from the form', image: STEPPER, owner: 'rita' });
    expect(created.runs.map((r) => r.site)).toEqual([idleSite]);
    expect(await registry.store.getTaskConfig(id)).toMatchObject({ configType: 'application/json' });
    expect(JSON.parse((await registry.store.getTaskConfig(id))!.config.toString('utf8'))).toEqual({ rounds: 3 });
  });

  it('lists tasks newest first with filters', async () => {
    await page.getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Tasks' }).waitFor();
    await page.getByRole('cell', { name: /from the form/ }).waitFor();
    await expectAccessible('the task list');
    await screenshot(page, 'tasks');
    await page.getByLabel('Status').selectOption('completed');
    await expect.poll(() => page.getByRole('row').count(), UNTIMED).toBe(2);
    expect(await page.getByRole('link', { name: `#${stepperTask.id}` }).count()).toBe(1);
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('from the form');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.getByRole('row').count(), UNTIMED).toBe(2);
  });

  it('lets an admin see the sites with their counts, add a site (key shown once) and disable one', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await signIn(adminToken);
    await page.getByRole('link', { name: 'Sites' }).click();
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: site }) });
    await expect.poll(() => row.textContent(), UNTIMED).toContain('online');
    // site: the stepper run completed, the rejected one counts as failed.
    const cells = await row.getByRole('cell').allTextContents();
    expect(cells[0]).toBe('none'); // the site belongs to no organization
    expect(cells.slice(3, 7)).toEqual(['1', '1', '0', '0']);
    await expectAccessible('the sites screen');
    await screenshot(page, 'sites');

    await page.getByLabel('Site name').fill('new-hospital');
    await page.getByRole('button', { name: 'Add site' }).click();
    const key = page.getByLabel('API key of site new-hospital');
    await key.waitFor();
    const apiKey = await key.inputValue();
    expect(apiKey).toMatch(/^pht_site_/);
    const me = await fetch(`${registry.url}/api/v1/site/me`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(me.status).toBe(200);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    expect(await page.getByLabel('API key of site new-hospital').count()).toBe(0);

    await page.getByRole('button', { name: `Disable site ${idleSite}` }).click();
    await page.getByRole('button', { name: `Enable site ${idleSite}` }).waitFor();
    expect((await researcher.call('GET', '/sites')).json).toContainEqual(
      expect.objectContaining({ name: idleSite, enabled: false }),
    );
    // Enabling it again shows its new key once (the revoked one stays revoked).
    await page.getByRole('button', { name: `Enable site ${idleSite}` }).click();
    const newKey = await page.getByLabel(`New API key of site ${idleSite}`).inputValue();
    expect(newKey).toMatch(/^pht_site_/);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    await page.getByRole('button', { name: `Disable site ${idleSite}` }).waitFor();
  });

  it('pages through many sites and filters them by name or organization', async () => {
    // 120 more sites (bulk-000…bulk-119, before every other name), five of them in one organization.
    for (let i = 0; i < 120; i++) await registry.createSite(`bulk-${String(i).padStart(3, '0')}`);
    await registry.store.createOrganization('Umc-Zuid');
    for (let i = 0; i < 5; i++) await registry.store.setOrganization('site', `bulk-00${i}`, 'Umc-Zuid');
    const total = (await researcher.call('GET', '/sites')).json as unknown[];
    expect(total).toHaveLength(123);
    const siteRows = page.getByRole('row').filter({ has: page.getByRole('rowheader') });
    const pager = page.getByRole('navigation', { name: 'Pages' });
    // Away and back: the sites screen loads afresh.
    await page.getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('link', { name: 'Sites', exact: true }).click();
    await expect.poll(() => pager.textContent(), UNTIMED).toContain('1–50 of 123');
    expect(await siteRows.count()).toBe(50);
    expect(await siteRows.first().getByRole('rowheader').textContent()).toBe('bulk-000');
    expect(await page.getByText('123 sites,').count()).toBe(1);
    await expectAccessible('the sites screen, paged');

    await pager.getByRole('link', { name: 'Next page' }).click();
    await expect.poll(() => pager.textContent(), UNTIMED).toContain('51–100 of 123');
    expect(await siteRows.first().getByRole('rowheader').textContent()).toBe('bulk-050');
    expect(page.url()).toContain('#/sites?page=2');
    await pager.getByRole('link', { name: 'Next page' }).click();
    await expect.poll(() => pager.textContent(), UNTIMED).toContain('101–123 of 123');
    expect(await siteRows.count()).toBe(23);
    expect(await pager.getByRole('link', { name: 'Next page' }).count()).toBe(0);
    await pager.getByRole('link', { name: 'Previous page' }).click();
    await expect.poll(() => pager.textContent(), UNTIMED).toContain('51–100 of 123');

    // A filter starts again at page 1 and counts only the matching sites.
    await page.getByLabel('Search sites').fill('umc-zuid');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => siteRows.count(), UNTIMED).toBe(5);
    expect(await page.getByText('5 sites match,').count()).toBe(1);
    expect(await pager.count()).toBe(0);
    for (const cells of await Promise.all((await siteRows.all()).map((r) => r.getByRole('cell').first().textContent())))
      expect(cells).toBe('Umc-Zuid');
    await page.getByLabel('Search sites').fill('bulk-11');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => siteRows.count(), UNTIMED).toBe(10);
    expect(await siteRows.first().getByRole('rowheader').textContent()).toBe('bulk-110');
    await page.getByLabel('Search sites').fill('nowhere-at-all');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No sites match this filter.').waitFor();
  });

  it('lets an admin create a researcher and shows the token once', async () => {
    await page.getByRole('link', { name: 'Researchers' }).click();
    await page.getByRole('heading', { level: 1, name: 'Researchers and admins' }).waitFor();
    await page.getByLabel('Name').fill('nina');
    await page.getByRole('button', { name: 'Create' }).click();
    const token = await page.getByLabel('Token of researcher nina').inputValue();
    expect(token).toMatch(/^pht_user_/);
    await expectAccessible('the researchers screen');
    const who = await fetch(`${registry.url}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(await who.json()).toEqual({ name: 'nina', kind: 'user', role: 'researcher' });
  });

  it('ran everything without a CSP violation or a page error', () => {
    expect(browser.problems).toEqual([]);
  });

  it('refuses injected markup and code (the CSP and Trusted Types are in force)', async () => {
    // What an injection would try once it had a foothold: markup, an inline script, an inline
    // event handler. Each must be refused by the browser, not merely unused by the app. (eval is
    // not tried here: code run through the DevTools protocol is exempt from the page's CSP.)
    const outcomes = (await page.evaluate(`(() => {
      const attempts = {
        markup: () => document.body.insertAdjacentHTML('beforeend', '<img src=x onerror="window.__pwned = 1">'),
        inlineScript: () => {
          const s = document.createElement('script');
          s.textContent = 'window.__pwned = 2';
          document.body.append(s);
        },
        handler: () => document.body.setAttribute('onclick', 'window.__pwned = 3'),
      };
      const out = {};
      for (const [name, attempt] of Object.entries(attempts)) {
        try { attempt(); out[name] = 'ran'; } catch (e) { out[name] = 'refused: ' + e.name; }
      }
      document.body.click();
      return out;
    })()`)) as Record<string, string>;
    expect(outcomes).toEqual({
      markup: expect.stringMatching(/^refused/),
      inlineScript: expect.stringMatching(/^refused/),
      handler: expect.stringMatching(/^refused/),
    });
    expect(await page.evaluate('window.__pwned === undefined')).toBe(true);
  });
});
