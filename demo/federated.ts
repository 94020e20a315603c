/**
 * The researcher's side of the demo analyses: pure functions that combine the per-site results of
 * the algorithm images (algorithms/descriptive-stats, algorithms/logistic-regression) into pooled
 * answers. Nothing here sees a patient: only counts, means, sums of squares, gradients and Hessians.
 *
 * Both combinations are exact, not approximations: pooled means and standard deviations equal the
 * ones computed on the pooled data, and the Newton–Raphson step built from summed gradients and
 * Hessians is the step a central analysis would take. demo/central.ts computes the same things on
 * the raw data, and test/demo/federated.test.ts holds the two against each other.
 */

/** A numeric variable at one site, as descriptive-stats reports it. */
export interface NumericSummary {
  count: number;
  /** null when count is 0 */
  mean: number | null;
  /** Sum of squared deviations from `mean`. */
  m2: number;
  /** Sample standard deviation; null when count < 2. */
  sd: number | null;
  min: number | null;
  max: number | null;
}

/** result.json of algorithms/descriptive-stats. */
export interface DescriptiveStatsResult {
  algorithm: 'descriptive-stats';
  version: 1;
  taskId?: string | null;
  runId?: string | null;
  patients: number;
  variables: Record<string, NumericSummary>;
  categories: Record<string, Record<string, number>>;
}

/** result.json of algorithms/logistic-regression. */
export interface LogisticRegressionResult {
  algorithm: 'logistic-regression';
  version: 1;
  taskId?: string | null;
  runId?: string | null;
  features: string[];
  standardize: Standardization;
  coefficients: number[];
  count: number;
  excluded: number;
  logLikelihood: number;
  gradient: number[];
  hessian: number[][];
}

export interface Standardization {
  age: { center: number; scale: number };
  bmi: { center: number; scale: number };
}

/** One site's result, tagged with the site it came from. */
export interface SiteResult<T> {
  site: string;
  result: T;
}

export interface DescriptiveStatsSummary {
  patients: number;
  variables: Record<string, NumericSummary>;
  categories: Record<string, Record<string, number>>;
}

export interface PooledDescriptiveStats {
  /** Each site's own summary, as reported. */
  sites: Record<string, DescriptiveStatsSummary>;
  /** All sites together. */
  pooled: DescriptiveStatsSummary;
}

/**
 * Combines summaries of disjoint groups into the summary of their union (Chan, Golub and LeVeque's
 * parallel formula): M2 = Σ M2_i + Σ n_i (mean_i − mean)², which stays accurate where the naive
 * Σx² − n·mean² would cancel catastrophically.
 */
export function poolNumericSummaries(parts: readonly NumericSummary[]): NumericSummary {
  const present = parts.filter((p) => p.count > 0);
  const count = present.reduce((n, p) => n + p.count, 0);
  if (count === 0) return { count: 0, mean: null, m2: 0, sd: null, min: null, max: null };
  const mean = present.reduce((s, p) => s + p.count * p.mean!, 0) / count;
  const m2 = present.reduce((s, p) => s + p.m2 + p.count * (p.mean! - mean) ** 2, 0);
  return {
    count,
    mean,
    m2,
    sd: count > 1 ? Math.sqrt(m2 / (count - 1)) : null,
    min: Math.min(...present.map((p) => p.min!)),
    max: Math.max(...present.map((p) => p.max!)),
  };
}

function checkAlgorithm(site: string, result: { algorithm?: unknown; version?: unknown }, expected: string): void {
  if (result.algorithm !== expected || result.version !== 1) {
    throw new Error(
      `site ${site}: expected a ${expected} v1 result, got ${String(result.algorithm)} v${String(result.version)}`,
    );
  }
}

function checkUniqueSites(siteResults: readonly SiteResult<unknown>[]): void {
  const seen = new Set<string>();
  for (const { site } of siteResults) {
    if (seen.has(site)) throw new Error(`site ${site} appears twice: each site's data may be counted once`);
    seen.add(site);
  }
}

/** Per-site and pooled count/mean/sd (and min, max, category counts) from descriptive-stats results. */
export function poolDescriptiveStats(
  siteResults: readonly SiteResult<DescriptiveStatsResult>[],
): PooledDescriptiveStats {
  if (siteResults.length === 0) throw new Error('no site results to pool');
  checkUniqueSites(siteResults);
  for (const { site, result } of siteResults) checkAlgorithm(site, result, 'descriptive-stats');
  const sites: Record<string, DescriptiveStatsSummary> = {};
  for (const { site, result } of siteResults) {
    sites[site] = { patients: result.patients, variables: result.variables, categories: result.categories };
  }
  const variableNames = [...new Set(siteResults.flatMap(({ result }) => Object.keys(result.variables)))].sort();
  const variables: Record<string, NumericSummary> = {};
  for (const name of variableNames) {
    variables[name] = poolNumericSummaries(
      siteResults.flatMap(({ result }) => (result.variables[name] ? [result.variables[name]] : [])),
    );
  }
  const categories: Record<string, Record<string, number>> = {};
  for (const { result } of siteResults) {
    for (const [name, counts] of Object.entries(result.categories)) {
      const into = (categories[name] ??= {});
      for (const [level, n] of Object.entries(counts)) into[level] = (into[level] ?? 0) + n;
    }
  }
  const patients = siteResults.reduce((n, { result }) => n + result.patients, 0);
  return { sites, pooled: { patients, variables, categories } };
}

/** The sum of the sites' log-likelihood terms at one set of coefficients. */
export interface CombinedLikelihood {
  coefficients: number[];
  count: number;
  excluded: number;
  logLikelihood: number;
  gradient: number[];
  hessian: number[][];
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Adds up the sites' gradients, Hessians and log-likelihoods. Refuses results computed at other
 * coefficients or with other scaling: summing those would silently give a wrong step.
 */
export function combineLogisticResults(
  coefficients: readonly number[],
  siteResults: readonly SiteResult<LogisticRegressionResult>[],
): CombinedLikelihood {
  if (siteResults.length === 0) throw new Error('no site results to combine');
  checkUniqueSites(siteResults);
  const k = coefficients.length;
  const first = siteResults[0]!.result;
  const combined: CombinedLikelihood = {
    coefficients: [...coefficients],
    count: 0,
    excluded: 0,
    logLikelihood: 0,
    gradient: new Array<number>(k).fill(0),
    hessian: Array.from({ length: k }, () => new Array<number>(k).fill(0)),
  };
  for (const { site, result } of siteResults) {
    checkAlgorithm(site, result, 'logistic-regression');
    if (!sameNumbers(result.coefficients, coefficients)) {
      throw new Error(
        `site ${site} evaluated coefficients [${result.coefficients.join(', ')}], not [${coefficients.join(', ')}]`,
      );
    }
    if (JSON.stringify(result.standardize) !== JSON.stringify(first.standardize)) {
      throw new Error(`site ${site} used other feature scaling than site ${siteResults[0]!.site}`);
    }
    if (result.gradient.length !== k || result.hessian.length !== k || result.hessian.some((row) => row.length !== k)) {
      throw new Error(`site ${site}: gradient and Hessian must have ${k} entries per dimension`);
    }
    combined.count += result.count;
    combined.excluded += result.excluded;
    combined.logLikelihood += result.logLikelihood;
    for (let i = 0; i < k; i++) {
      combined.gradient[i]! += result.gradient[i]!;
      for (let j = 0; j < k; j++) combined.hessian[i]![j]! += result.hessian[i]![j]!;
    }
  }
  return combined;
}

/** Solves A x = b by Gaussian elimination with partial pivoting (A is small: one row per feature). */
export function solveLinearSystem(a: readonly (readonly number[])[], b: readonly number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r]![col]!) > Math.abs(m[pivot]![col]!)) pivot = r;
    if (!(Math.abs(m[pivot]![col]!) > 1e-300))
      throw new Error('the system is singular: is some feature constant at every site?');
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    for (let r = col + 1; r < n; r++) {
      const f = m[r]![col]! / m[col]![col]!;
      for (let c = col; c <= n; c++) m[r]![c]! -= f * m[col]![c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let c = r + 1; c < n; c++) s -= m[r]![c]! * x[c]!;
    x[r] = s / m[r]![r]!;
  }
  return x;
}

/**
 * One Newton–Raphson step from the sites' results at `coefficients`:
 * b_new = b − H⁻¹ g with H and g summed over the sites.
 */
export function newtonStep(
  coefficients: readonly number[],
  siteResults: readonly SiteResult<LogisticRegressionResult>[],
): number[] {
  const { gradient, hessian } = combineLogisticResults(coefficients, siteResults);
  const negated = hessian.map((row) => row.map((v) => -v));
  const delta = solveLinearSystem(negated, gradient);
  return coefficients.map((b, i) => b + delta[i]!);
}

/** Standard errors of the coefficients: square roots of the diagonal of (−H)⁻¹. */
export function standardErrors(hessian: readonly (readonly number[])[]): number[] {
  const k = hessian.length;
  const negated = hessian.map((row) => row.map((v) => -v));
  return Array.from({ length: k }, (_, i) => {
    const unit = Array.from({ length: k }, (_, j) => (i === j ? 1 : 0));
    return Math.sqrt(solveLinearSystem(negated, unit)[i]!);
  });
}

/**
 * Coefficients on the original scales (per year of age, per kg/m² of BMI) from coefficients on
 * the standardised features [intercept, age', bmi', female].
 */
export function unstandardize(coefficients: readonly number[], s: Standardization): number[] {
  const [b0, bAge, bBmi, bSex] = coefficients as [number, number, number, number];
  return [
    b0 - (bAge * s.age.center) / s.age.scale - (bBmi * s.bmi.center) / s.bmi.scale,
    bAge / s.age.scale,
    bBmi / s.bmi.scale,
    bSex,
  ];
}

export interface NewtonRaphsonOptions {
  start?: readonly number[];
  /** Stop when no coefficient moves more than this in a step. */
  tolerance?: number;
  maxIterations?: number;
}

export interface NewtonRaphsonFit {
  coefficients: number[];
  converged: boolean;
  /** Rounds of site evaluations made. */
  iterations: number;
  /** At the last evaluated coefficients (one tiny step before `coefficients` when converged). */
  logLikelihood: number;
  standardErrors: number[];
  count: number;
  history: Array<{ coefficients: number[]; logLikelihood: number }>;
}

/**
 * Fits the logistic regression by federated Newton–Raphson: `evaluate` runs the algorithm at every
 * site with the given coefficients (in the demo, one task per round) and returns their results.
 */
export async function fitNewtonRaphson(
  evaluate: (coefficients: number[]) => Promise<SiteResult<LogisticRegressionResult>[]>,
  options: NewtonRaphsonOptions = {},
): Promise<NewtonRaphsonFit> {
  const tolerance = options.tolerance ?? 1e-10;
  const maxIterations = options.maxIterations ?? 25;
  let coefficients = [...(options.start ?? [0, 0, 0, 0])];
  const history: NewtonRaphsonFit['history'] = [];
  let last: CombinedLikelihood | null = null;
  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    const results = await evaluate([...coefficients]);
    last = combineLogisticResults(coefficients, results);
    history.push({ coefficients: [...coefficients], logLikelihood: last.logLikelihood });
    const next = newtonStep(coefficients, results);
    const moved = Math.max(...next.map((b, i) => Math.abs(b - coefficients[i]!)));
    coefficients = next;
    if (moved < tolerance) {
      return {
        coefficients,
        converged: true,
        iterations: iteration,
        logLikelihood: last.logLikelihood,
        standardErrors: standardErrors(last.hessian),
        count: last.count,
        history,
      };
    }
  }
  if (!last) throw new Error('maxIterations must be at least 1');
  return {
    coefficients,
    converged: false,
    iterations: maxIterations,
    logLikelihood: last.logLikelihood,
    standardErrors: standardErrors(last.hessian),
    count: last.count,
    history,
  };
}
