import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SiteClient } from '../../client/site-client.js';
import {
  centralDescriptiveStats,
  centralLogisticRegression,
  designMatrix,
  logisticLikelihood,
} from '../../demo/central.js';
import type { DescriptiveStatsResult, LogisticRegressionResult } from '../../demo/federated.js';
import { federatedLogisticRegression } from '../../demo/researcher-logistic-regression.js';
import { DEMO_SITES, generateSitePatients, OUTCOME_MODEL, patientsToTurtle } from '../../demo/synthetic-data.js';
import { PhtClient, type RunWithResult } from '../../sdk/index.js';
import { IMAGE_REGISTRY } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { startVirtuoso, type RunningVirtuoso } from '../helpers/virtuoso.js';
import { cleanupSite, clientConfig, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

// One hospital whose patients live in a real Virtuoso 7 instead of the demo's oxigraph endpoint,
// behind a real registry and a real site client, running the demo's two algorithm images. Virtuoso
// answers in its own dialect (typed-literal terms, 30.0 written as "30"); the algorithms' SPARQL
// results parser is meant to make that invisible, and the numbers below must say so.

const execFileAsync = promisify(execFile);
const ROOT = path.join(__dirname, '..', '..');
const DESCRIPTIVE_STATS = `${IMAGE_REGISTRY}/pht/descriptive-stats:1`;
const LOGISTIC_REGRESSION = `${IMAGE_REGISTRY}/pht/logistic-regression:1`;
// site-c: 900 patients, 38 of them without a BMI, so OPTIONAL and complete-case counting matter.
const PROFILE = DEMO_SITES.find((s) => s.name === 'site-c')!;
const GRAPH = 'https://w3id.org/pht/demo/site-c';

describe('a site whose patients live in Virtuoso', () => {
  const patients = generateSitePatients(PROFILE);
  let dir: string;
  let virtuoso: RunningVirtuoso;
  let registry: TestRegistry;
  let site: string;
  let client: SiteClient;
  let pht: PhtClient;

  beforeAll(async () => {
    // The demo's own build: images as `npm start` would run them.
    await execFileAsync('bash', [path.join(ROOT, 'demo', 'build-algorithm-images.sh')], {
      cwd: ROOT,
      timeout: 300_000,
    });
    dir = makeTempDir('pht-virtuoso-e2e-');
    const turtle = path.join(dir, 'site-c.ttl');
    fs.writeFileSync(turtle, patientsToTurtle(patients));
    virtuoso = await startVirtuoso();
    await virtuoso.loadTurtle(turtle, GRAPH);
    registry = await startTestRegistry();
    site = uniqueSiteName('virtuoso');
    client = await startClient(
      clientConfig(registry.url, await registry.createSite(site), virtuoso.sparqlUrl, {
        allowedImages: [`${IMAGE_REGISTRY.replace(/\./g, '\\.')}/pht/.*`],
      }),
    );
    pht = new PhtClient({ url: registry.url, token: await registry.createUser('vera') });
  });

  afterAll(async () => {
    await pht?.close();
    await client?.close();
    if (site) await cleanupSite(site);
    await virtuoso?.stop();
    await registry?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs one task at the Virtuoso site and returns its run, failing with the run's log if it did not complete. */
  async function runAtSite(image: string, config: unknown): Promise<RunWithResult> {
    const task = await pht.runTask({ image, config, sites: [site] }, { timeoutMs: 150_000 });
    const run = task.runs[0]!;
    expect(run.status, `run ${run.id} ${run.status} (${run.reason}):\n${await pht.getRunLog(run.id)}`).toBe(
      'completed',
    );
    return run;
  }

  it('serves the patients in its own dialect: typed-literal terms and decimals without their ".0"', async () => {
    const query = 'PREFIX pht: <https://w3id.org/pht/demo#> SELECT ?bmi WHERE { ?p a pht:Patient ; pht:bmi ?bmi }';
    const response = await fetch(virtuoso.sparqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/sparql-results+json' },
      body: new URLSearchParams({ query }).toString(),
    });
    const bindings = (
      (await response.json()) as { results: { bindings: Array<{ bmi: { type: string; value: string } }> } }
    ).results.bindings;
    expect(bindings).toHaveLength(patients.filter((p) => p.bmi !== null).length);
    // Without these the test would not exercise the parser's Virtuoso paths.
    expect(new Set(bindings.map((b) => b.bmi.type))).toEqual(new Set(['typed-literal']));
    expect(bindings.some((b) => !b.bmi.value.includes('.'))).toBe(true);
  });

  it('runs descriptive-stats through the train and matches the central computation for its patients', async () => {
    const run = await runAtSite(DESCRIPTIVE_STATS, { minCount: 10 });
    const result = run.result as DescriptiveStatsResult;
    const central = centralDescriptiveStats(patients);
    expect(result.algorithm).toBe('descriptive-stats');
    expect(result.patients).toBe(central.patients);
    for (const variable of ['age', 'bmi'] as const) {
      const got = result.variables[variable]!;
      const want = central.variables[variable];
      expect(got.count).toBe(want.count);
      expect(Math.abs(got.mean! - want.mean!)).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(got.sd! - want.sd!)).toBeLessThanOrEqual(1e-6);
      expect([got.min, got.max]).toEqual([want.min, want.max]);
    }
    expect(result.variables.bmi!.count).toBe(PROFILE.size - 38);
    expect(result.categories).toEqual(central.categories);
  });

  it('returns, for one logistic-regression round, the gradient and Hessian of a central evaluation at the same coefficients', async () => {
    const coefficients = [0.8, -0.6, -0.25, 0.2];
    const run = await runAtSite(LOGISTIC_REGRESSION, { coefficients, standardize: OUTCOME_MODEL.standardize });
    const result = run.result as LogisticRegressionResult;
    const { x, y } = designMatrix(patients);
    const central = logisticLikelihood(x, y, coefficients);
    expect(result.coefficients).toEqual(coefficients);
    expect([result.count, result.excluded]).toEqual([y.length, patients.length - y.length]);
    expect(Math.abs(result.logLikelihood - central.logLikelihood)).toBeLessThanOrEqual(1e-6);
    const gradientDiff = Math.max(...result.gradient.map((g, i) => Math.abs(g - central.gradient[i]!)));
    const hessianDiff = Math.max(
      ...result.hessian.flatMap((row, i) => row.map((h, j) => Math.abs(h - central.hessian[i]![j]!))),
    );
    expect(gradientDiff).toBeLessThanOrEqual(1e-6);
    expect(hessianDiff).toBeLessThanOrEqual(1e-6);
  });

  // One task per round: on a loaded two-core machine a round can take many seconds.
  it(
    'fits the logistic regression by federated Newton-Raphson to the central coefficients',
    { timeout: 600_000 },
    async () => {
      const { fit, rounds } = await federatedLogisticRegression(pht, [site], {
        image: LOGISTIC_REGRESSION,
        roundTimeoutMs: 150_000,
      });
      const central = centralLogisticRegression(patients);
      expect(fit.converged).toBe(true);
      expect(rounds.length).toBe(fit.iterations);
      expect(fit.count).toBe(central.count);
      expect(Math.max(...fit.coefficients.map((b, i) => Math.abs(b - central.coefficients[i]!)))).toBeLessThanOrEqual(
        1e-3,
      );
    },
  );
});
