/**
 * The reference answers: the demo's analyses done centrally, on all sites' raw patients pooled in
 * one place — exactly what the Personal Health Train avoids, and exactly what its federated
 * answers must equal.
 *
 * Deliberately written independently of the algorithms and of demo/federated.ts (two-pass mean
 * and variance instead of Welford and Chan, a Cholesky solve instead of Gaussian elimination), so
 * that agreement between the two is evidence rather than the same code run twice.
 *
 * CLI: `node dist/demo/central.js [--seed N]` prints the reference results as JSON.
 */
import { integerOption, runCommandLine } from '../shared/command-line.js';
import { DEMO_SEED, generateDemoData, OUTCOME_MODEL, type Patient } from './synthetic-data.js';
import type { Standardization } from './federated.js';

export interface CentralNumericSummary {
  count: number;
  mean: number | null;
  sd: number | null;
  min: number | null;
  max: number | null;
}

export interface CentralDescriptiveStats {
  patients: number;
  variables: { age: CentralNumericSummary; bmi: CentralNumericSummary };
  categories: { sex: Record<string, number>; diagnosis: Record<string, number> };
}

function summarise(values: readonly number[]): CentralNumericSummary {
  const n = values.length;
  if (n === 0) return { count: 0, mean: null, sd: null, min: null, max: null };
  const mean = values.reduce((s, x) => s + x, 0) / n;
  const ss = values.reduce((s, x) => s + (x - mean) ** 2, 0);
  return {
    count: n,
    mean,
    sd: n > 1 ? Math.sqrt(ss / (n - 1)) : null,
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

function tally(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/** Count, mean, sd, min and max of age and BMI (each over its recorded values), and category counts. */
export function centralDescriptiveStats(patients: readonly Patient[]): CentralDescriptiveStats {
  return {
    patients: patients.length,
    variables: {
      age: summarise(patients.map((p) => p.age)),
      bmi: summarise(patients.flatMap((p) => (p.bmi === null ? [] : [p.bmi]))),
    },
    categories: { sex: tally(patients.map((p) => p.sex)), diagnosis: tally(patients.map((p) => p.diagnosis)) },
  };
}

/** The design matrix rows [1, age', bmi', female] and outcomes of the complete cases. */
export function designMatrix(
  patients: readonly Patient[],
  s: Standardization = OUTCOME_MODEL.standardize,
): { x: number[][]; y: number[] } {
  const x: number[][] = [];
  const y: number[] = [];
  for (const p of patients) {
    if (p.bmi === null) continue;
    x.push([1, (p.age - s.age.center) / s.age.scale, (p.bmi - s.bmi.center) / s.bmi.scale, p.sex === 'F' ? 1 : 0]);
    y.push(p.survived2y);
  }
  return { x, y };
}

/** Log-likelihood, gradient and Hessian of the logistic model at b, over all rows at once. */
export function logisticLikelihood(
  x: readonly (readonly number[])[],
  y: readonly number[],
  b: readonly number[],
): { logLikelihood: number; gradient: number[]; hessian: number[][] } {
  const k = b.length;
  const gradient = new Array<number>(k).fill(0);
  const hessian = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let logLikelihood = 0;
  x.forEach((row, n) => {
    const eta = row.reduce((s, v, i) => s + v * b[i]!, 0);
    const p = 1 / (1 + Math.exp(-eta));
    // log P(y | eta) written for both signs of eta without overflow.
    logLikelihood += y[n]! * eta - (Math.max(eta, 0) + Math.log1p(Math.exp(-Math.abs(eta))));
    for (let i = 0; i < k; i++) {
      gradient[i]! += (y[n]! - p) * row[i]!;
      for (let j = 0; j < k; j++) hessian[i]![j]! -= p * (1 - p) * row[i]! * row[j]!;
    }
  });
  return { logLikelihood, gradient, hessian };
}

/** Solves A x = b for a symmetric positive definite A by Cholesky decomposition. */
function choleskySolve(a: readonly (readonly number[])[], b: readonly number[]): number[] {
  const n = b.length;
  const l = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i]![j]!;
      for (let k = 0; k < j; k++) s -= l[i]![k]! * l[j]![k]!;
      if (i === j) {
        if (!(s > 0)) throw new Error('the information matrix is not positive definite');
        l[i]![i] = Math.sqrt(s);
      } else {
        l[i]![j] = s / l[j]![j]!;
      }
    }
  }
  const z = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i]![k]! * z[k]!;
    z[i] = s / l[i]![i]!;
  }
  const x = new Array<number>(n).fill(0);
  for (let i = n - 1; i >= 0; i--) {
    let s = z[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k]![i]! * x[k]!;
    x[i] = s / l[i]![i]!;
  }
  return x;
}

export interface CentralLogisticFit {
  coefficients: number[];
  standardErrors: number[];
  logLikelihood: number;
  /** Gradient at the final coefficients: ~0 at the maximum. */
  gradient: number[];
  iterations: number;
  count: number;
  excluded: number;
}

/** Maximum-likelihood logistic regression by Newton–Raphson, iterated to convergence. */
export function centralLogisticRegression(
  patients: readonly Patient[],
  options: { standardize?: Standardization; tolerance?: number; maxIterations?: number } = {},
): CentralLogisticFit {
  const { x, y } = designMatrix(patients, options.standardize);
  const tolerance = options.tolerance ?? 1e-12;
  const maxIterations = options.maxIterations ?? 50;
  let b = [0, 0, 0, 0];
  for (let iteration = 1; iteration <= maxIterations; iteration++) {
    const { hessian, gradient } = logisticLikelihood(x, y, b);
    const step = choleskySolve(
      hessian.map((row) => row.map((v) => -v)),
      gradient,
    );
    b = b.map((v, i) => v + step[i]!);
    if (Math.max(...step.map(Math.abs)) < tolerance) {
      const final = logisticLikelihood(x, y, b);
      const information = final.hessian.map((row) => row.map((v) => -v));
      const standardErrors = b.map((_, i) =>
        Math.sqrt(
          choleskySolve(
            information,
            b.map((__, j) => (i === j ? 1 : 0)),
          )[i]!,
        ),
      );
      return {
        coefficients: b,
        standardErrors,
        logLikelihood: final.logLikelihood,
        gradient: final.gradient,
        iterations: iteration,
        count: y.length,
        excluded: patients.length - y.length,
      };
    }
  }
  throw new Error(`Newton–Raphson did not converge in ${maxIterations} iterations`);
}

/** All demo sites' patients in one list. */
export function pooledDemoPatients(seed: number = DEMO_SEED): Patient[] {
  return [...generateDemoData(seed).values()].flat();
}

const USAGE = `Usage: node dist/demo/central.js [--seed N]
  Prints the demo's computations done centrally on the pooled synthetic patients (JSON).`;

export function main(argv: string[]): Promise<number> {
  return runCommandLine(argv, { usage: USAGE, options: { seed: 'value' } }, (args) => {
    const seed = integerOption(args, 'seed', DEMO_SEED);
    return printCentral(seed);
  });
}

function printCentral(seed: number): number {
  const patients = pooledDemoPatients(seed);
  const report = {
    seed,
    descriptiveStats: centralDescriptiveStats(patients),
    logisticRegression: { standardize: OUTCOME_MODEL.standardize, ...centralLogisticRegression(patients) },
  };
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return 0;
}

if (require.main === module)
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
