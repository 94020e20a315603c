/**
 * A real browser for the dashboard tests: Debian's chromium driven by playwright-core, with a fresh
 * profile per launch, axe-core injected from node_modules (never a CDN), a record of every CSP
 * violation and page error, and screenshots as test artifacts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { makeTempDir } from '../../helpers/temp-dirs.js';

export const CHROMIUM = process.env.PHT_CHROMIUM ?? '/usr/bin/chromium';
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** Screenshots of every run, kept by CI as artifacts (git ignores the folder). */
export const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'dashboard');
/** The README's screenshots, rewritten when PHT_UPDATE_SCREENSHOTS=1. */
const DOCS = path.join(REPO_ROOT, 'docs', 'screenshots');

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** CSP violations and uncaught errors seen so far, on any page. */
  problems: string[];
  downloads: string;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)`);
  const profile = makeTempDir('pht-chromium-');
  const downloads = makeTempDir('pht-downloads-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_FLAGS,
    headless: true,
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
    downloadsPath: downloads,
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  const problems: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (m) => {
      if (/Content Security Policy|Trusted ?(Type|Script|HTML)/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  };
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  return {
    context,
    page,
    problems,
    downloads,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
      fs.rmSync(downloads, { recursive: true, force: true });
    },
  };
}

const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/**
 * Runs axe-core (WCAG 2.x A and AA rules) on the page as it is now and returns the serious and
 * critical violations. The script is evaluated through the DevTools protocol, which the page's CSP
 * does not govern: the page itself still may not run inline code.
 */
export async function seriousA11yViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(`${AXE_SOURCE}\n;0`);
  const options = {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  };
  const result = (await page.evaluate(`axe.run(document, ${JSON.stringify(options)})`)) as {
    violations: AxeViolation[];
  };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
}

/** Saves a screenshot as a test artifact (and as the README's picture with PHT_UPDATE_SCREENSHOTS=1). */
export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  if (process.env.PHT_UPDATE_SCREENSHOTS === '1') {
    fs.mkdirSync(DOCS, { recursive: true });
    fs.copyFileSync(file, path.join(DOCS, `${name}.png`));
  }
}
