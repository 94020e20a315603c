import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { centralDescriptiveStats, designMatrix, logisticLikelihood } from '../../demo/central.js';
import type { DescriptiveStatsResult, LogisticRegressionResult } from '../../demo/federated.js';
import {
  createSparqlHandler,
  loadTurtleStore,
  startSparqlServer,
  type RunningSparqlServer,
} from '../../demo/sparql-server.js';
import { generateDemoData, OUTCOME_MODEL, patientsToTurtle, type Patient } from '../../demo/synthetic-data.js';
import { ALGORITHMS_DIR, runAlgorithm } from './run-algorithm.js';

const patients: Patient[] = generateDemoData().get('site-c')!;
let site: RunningSparqlServer;
let virtuosoLike: { url: string; close(): Promise<void> };

/**
 * An endpoint that answers like Virtuoso: typed values as "typed-literal", and every xsd:integer
 * without its datatype (as endpoints that drop datatypes do). Same data as `site`.
 */
async function startVirtuosoLikeEndpoint(turtle: string): Promise<{ url: string; close(): Promise<void> }> {
  const handler = createSparqlHandler(loadTurtleStore(turtle));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    // Buffer what the real handler writes, rewrite the JSON, send it on.
    res.write = ((chunk: Buffer | string) => (chunks.push(Buffer.from(chunk)), true)) as typeof res.write;
    res.end = ((chunk?: Buffer | string) => {
      if (chunk) chunks.push(Buffer.from(chunk));
      const body = Buffer.concat(chunks).toString('utf8');
      res.write = write;
      res.end = end;
      if (!String(res.getHeader('content-type') ?? '').startsWith('application/sparql-results+json')) return end(body);
      const doc = JSON.parse(body) as { results?: { bindings: Array<Record<string, Record<string, string>>> } };
      for (const binding of doc.results?.bindings ?? []) {
        for (const term of Object.values(binding)) {
          if (term.datatype?.endsWith('#integer')) delete term.datatype;
          else if (term.datatype) term.type = 'typed-literal';
        }
      }
      const text = JSON.stringify(doc);
      res.setHeader('content-length', Buffer.byteLength(text));
      return end(text);
    }) as typeof res.end;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sparql`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

beforeAll(async () => {
  const turtle = patientsToTurtle(patients);
  site = await startSparqlServer({ turtle, host: '127.0.0.1', port: 0 });
  virtuosoLike = await startVirtuosoLikeEndpoint(turtle);
});

afterAll(async () => {
  await site?.close();
  await virtuosoLike?.close();
});

describe('descriptive-stats algorithm', () => {
  it('writes result.json with count, mean, M2 and sd that match the raw data, and reports progress', async () => {
    const run = await runAlgorithm('descriptive-stats', { endpoint: site.url, config: {}, taskId: '7', runId: '21' });
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    const result = run.result as DescriptiveStatsResult;
    const central = centralDescriptiveStats(patients);
    expect(result).toMatchObject({
      algorithm: 'descriptive-stats',
      version: 1,
      taskId: '7',
      runId: '21',
      patients: 900,
    });
    for (const name of ['age', 'bmi'] as const) {
      const mine = result.variables[name]!;
      const theirs = central.variables[name];
      expect(mine.count).toBe(theirs.count);
      expect(mine.mean!).toBeCloseTo(theirs.mean!, 9);
      expect(mine.sd!).toBeCloseTo(theirs.sd!, 9);
      expect(mine.m2).toBeCloseTo(theirs.sd! ** 2 * (theirs.count - 1), 6);
      expect([mine.min, mine.max]).toEqual([theirs.min, theirs.max]);
    }
    expect(result.categories.sex).toEqual(central.categories.sex);
    expect(result.categories.diagnosis).toEqual(central.categories.diagnosis);
    expect(run.progress.at(-1)).toEqual({ current: 2, total: 2, message: 'done' });
    expect(run.progress.every((p) => typeof p.current === 'number' && typeof p.message === 'string')).toBe(true);
  });

  it('runs with defaults when no config file exists', async () => {
    const run = await runAlgorithm('descriptive-stats', { endpoint: site.url });
    expect(run.exitCode).toBe(0);
    expect((run.result as DescriptiveStatsResult).patients).toBe(900);
  });

  it('reports nothing and exits 1 when the site has fewer patients than minCount', async () => {
    const run = await runAlgorithm('descriptive-stats', { endpoint: site.url, config: { minCount: 1000 } });
    expect(run.exitCode).toBe(1);
    expect(run.result).toBeNull();
    expect(run.stderr).toMatch(/fewer than minCount 1000/);
  });

  it('exits 2 on an unknown config field or a config that is not JSON', async () => {
    const unknown = await runAlgorithm('descriptive-stats', { endpoint: site.url, config: { minCout: 3 } });
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/unknown config field "minCout"/);
    const notJson = await runAlgorithm('descriptive-stats', { endpoint: site.url, rawConfig: '{minCount: 3' });
    expect(notJson.exitCode).toBe(2);
  });

  it('exits 1 with the endpoint’s answer when the query fails', async () => {
    const run = await runAlgorithm('descriptive-stats', { endpoint: site.url.replace('/sparql', '/nope') });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/answered 404/);
  });

  it('gives the same result from a Virtuoso-style endpoint (typed-literal, missing datatypes)', async () => {
    const [standard, quirky] = await Promise.all([
      runAlgorithm('descriptive-stats', { endpoint: site.url }),
      runAlgorithm('descriptive-stats', { endpoint: virtuosoLike.url }),
    ]);
    expect(quirky.exitCode).toBe(0);
    expect(quirky.result).toEqual(standard.result);
  });
});

describe('logistic-regression algorithm', () => {
  const coefficients = [1, -0.5, -0.2, 0.3];

  it('writes the gradient, Hessian, log-likelihood and count of the complete cases at the given coefficients', async () => {
    const run = await runAlgorithm('logistic-regression', { endpoint: site.url, config: { coefficients } });
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    const result = run.result as LogisticRegressionResult;
    const { x, y } = designMatrix(patients, OUTCOME_MODEL.standardize);
    const central = logisticLikelihood(x, y, coefficients);
    expect(result).toMatchObject({
      algorithm: 'logistic-regression',
      version: 1,
      features: ['intercept', 'age', 'bmi', 'female'],
      standardize: OUTCOME_MODEL.standardize,
      coefficients,
      count: y.length,
      excluded: patients.length - y.length,
    });
    expect(result.logLikelihood).toBeCloseTo(central.logLikelihood, 8);
    result.gradient.forEach((g, i) => expect(g).toBeCloseTo(central.gradient[i]!, 8));
    result.hessian.forEach((row, i) => row.forEach((h, j) => expect(h).toBeCloseTo(central.hessian[i]![j]!, 8)));
    // The Hessian is symmetric: the researcher may rely on it.
    result.hessian.forEach((row, i) => row.forEach((h, j) => expect(h).toBe(result.hessian[j]![i])));
    expect(run.progress.at(-1)).toEqual({ current: 2, total: 2, message: 'done' });
  });

  it('uses the scaling constants from the config', async () => {
    const standardize = { age: { center: 50, scale: 20 }, bmi: { center: 25, scale: 4 } };
    const run = await runAlgorithm('logistic-regression', {
      endpoint: site.url,
      config: { coefficients, standardize },
    });
    expect(run.exitCode).toBe(0);
    const { x, y } = designMatrix(patients, standardize);
    const result = run.result as LogisticRegressionResult;
    expect(result.standardize).toEqual(standardize);
    expect(result.logLikelihood).toBeCloseTo(logisticLikelihood(x, y, coefficients).logLikelihood, 8);
  });

  it('starts from zero coefficients when none are given', async () => {
    const run = await runAlgorithm('logistic-regression', { endpoint: site.url, config: {} });
    expect(run.exitCode).toBe(0);
    const result = run.result as LogisticRegressionResult;
    expect(result.coefficients).toEqual([0, 0, 0, 0]);
    // At b = 0 every p is 1/2: log-likelihood is −n·log 2.
    expect(result.logLikelihood).toBeCloseTo(-result.count * Math.log(2), 8);
  });

  it('exits 2 on coefficients of the wrong length or a scale of zero', async () => {
    const short = await runAlgorithm('logistic-regression', { endpoint: site.url, config: { coefficients: [1, 2] } });
    expect(short.exitCode).toBe(2);
    expect(short.stderr).toMatch(/coefficients must be 4 finite numbers/);
    const zero = await runAlgorithm('logistic-regression', {
      endpoint: site.url,
      config: { standardize: { age: { center: 60, scale: 0 } } },
    });
    expect(zero.exitCode).toBe(2);
    expect(zero.result).toBeNull();
  });

  it('gives the same result from a Virtuoso-style endpoint (typed-literal, missing datatypes)', async () => {
    const [standard, quirky] = await Promise.all([
      runAlgorithm('logistic-regression', { endpoint: site.url, config: { coefficients } }),
      runAlgorithm('logistic-regression', { endpoint: virtuosoLike.url, config: { coefficients } }),
    ]);
    expect(quirky.exitCode).toBe(0);
    expect(quirky.result).toEqual(standard.result);
  });
});

describe('algorithm folders', () => {
  it.each(['descriptive-stats', 'logistic-regression', 'pooled-quantiles'])(
    '%s carries an exact copy of algorithms/lib/sparql-results.js (run demo/build-algorithm-images.sh --sync-only)',
    (name) => {
      const source = fs.readFileSync(path.join(ALGORITHMS_DIR, 'lib', 'sparql-results.js'), 'utf8');
      expect(fs.readFileSync(path.join(ALGORITHMS_DIR, name, 'sparql-results.js'), 'utf8')).toBe(source);
    },
  );

  it.each(['descriptive-stats', 'logistic-regression', 'pooled-quantiles'])(
    '%s has a Dockerfile FROM the loopback node base image',
    (name) => {
      const dockerfile = fs.readFileSync(path.join(ALGORITHMS_DIR, name, 'Dockerfile'), 'utf8');
      expect(dockerfile).toMatch(/^ARG BASE=127\.0\.0\.1:5050\/pht\/node-base:20$/m);
      expect(dockerfile).toMatch(/^FROM \$\{BASE\}$/m);
      expect(dockerfile).toMatch(/^CMD \["\/app\/main\.js"\]$/m);
      // Everything main.js requires must be copied into the image.
      const main = fs.readFileSync(path.join(ALGORITHMS_DIR, name, 'main.js'), 'utf8');
      for (const [, local] of main.matchAll(/require\('\.\/([^']+)'\)/g)) {
        expect(dockerfile).toContain(`COPY ${local} /app/${local}`);
      }
    },
  );
});
