/**
 * The demo's point, in numbers: the federated answers next to the central ones (demo/central.ts,
 * computed on the pooled raw patients), with the largest absolute difference and whether it is
 * within tolerance. Pure functions from results to comparisons to printable text.
 */
import type { CentralDescriptiveStats, CentralLogisticFit } from './central.js';
import type { NewtonRaphsonFit, PooledDescriptiveStats } from './federated.js';

export const DESCRIPTIVE_TOLERANCE = 1e-6;
export const LOGISTIC_TOLERANCE = 1e-3;
const VARIABLES = ['age', 'bmi'] as const;

export interface DescriptiveRow {
  /** A site's registry name, or "pooled". */
  group: string;
  variable: string;
  federated: { count: number; mean: number | null; sd: number | null };
  central: { count: number; mean: number | null; sd: number | null };
}

export interface Comparison<Row> {
  rows: Row[];
  /** Largest |federated − central| over every compared number (Infinity when one side is missing). */
  maxAbsDifference: number;
  tolerance: number;
  agree: boolean;
}

/**
 * Count, mean and sd of age and BMI per site and pooled. `central` is keyed like the federated
 * sites (registry site names) plus "pooled".
 */
export function compareDescriptiveStats(
  federated: PooledDescriptiveStats,
  central: Record<string, CentralDescriptiveStats>,
  tolerance = DESCRIPTIVE_TOLERANCE,
): Comparison<DescriptiveRow> {
  const groups = [...Object.keys(federated.sites), 'pooled'];
  const rows: DescriptiveRow[] = [];
  let maxAbsDifference = 0;
  for (const group of groups) {
    const fed = group === 'pooled' ? federated.pooled : federated.sites[group]!;
    const cen = central[group];
    for (const variable of VARIABLES) {
      const f = fed.variables[variable];
      const c = cen?.variables[variable];
      const row: DescriptiveRow = {
        group,
        variable,
        federated: { count: f?.count ?? 0, mean: f?.mean ?? null, sd: f?.sd ?? null },
        central: { count: c?.count ?? 0, mean: c?.mean ?? null, sd: c?.sd ?? null },
      };
      rows.push(row);
      for (const key of ['count', 'mean', 'sd'] as const) {
        maxAbsDifference = Math.max(maxAbsDifference, absDifference(row.federated[key], row.central[key]));
      }
    }
  }
  return { rows, maxAbsDifference, tolerance, agree: maxAbsDifference <= tolerance };
}

export interface CoefficientRow {
  name: string;
  federated: number;
  central: number;
  federatedSe: number;
  centralSe: number;
}

export interface LogisticComparison extends Comparison<CoefficientRow> {
  logLikelihood: { federated: number; central: number };
  converged: boolean;
}

export const COEFFICIENT_NAMES = ['intercept', 'age (per 10 y)', 'bmi (per 5 kg/m²)', 'female'] as const;

/** Coefficients (and, for reading, standard errors and log-likelihood); agreement needs convergence too. */
export function compareLogisticRegression(
  federated: NewtonRaphsonFit,
  central: CentralLogisticFit,
  tolerance = LOGISTIC_TOLERANCE,
): LogisticComparison {
  const rows = central.coefficients.map((c, i) => ({
    name: COEFFICIENT_NAMES[i] ?? `b${i}`,
    federated: federated.coefficients[i] ?? NaN,
    central: c,
    federatedSe: federated.standardErrors[i] ?? NaN,
    centralSe: central.standardErrors[i]!,
  }));
  const differences = rows.map((r) => absDifference(r.federated, r.central));
  if (federated.coefficients.length !== central.coefficients.length) differences.push(Infinity);
  const maxAbsDifference = Math.max(...differences);
  return {
    rows,
    maxAbsDifference,
    tolerance,
    agree: federated.converged && maxAbsDifference <= tolerance,
    logLikelihood: { federated: federated.logLikelihood, central: central.logLikelihood },
    converged: federated.converged,
  };
}

function absDifference(a: number | null, b: number | null): number {
  if (a === null && b === null) return 0;
  if (a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
  return Math.abs(a - b);
}

/** Lines of a plain-text table: the first column left-aligned, the others right-aligned. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

function fixed(value: number | null, digits = 6): string {
  return value === null ? '-' : value.toFixed(digits);
}

/** The verdict line both tables end with. */
export function verdictLine(comparison: Comparison<unknown>, what: string): string {
  const verdict = comparison.agree ? 'AGREE' : 'DISAGREE';
  return `max |federated - central| over ${what}: ${comparison.maxAbsDifference.toExponential(2)} (tolerance ${comparison.tolerance.toExponential(0)}): ${verdict}`;
}

export function formatDescriptiveComparison(comparison: Comparison<DescriptiveRow>): string[] {
  const rows = comparison.rows.map((r) => [
    r.group,
    r.variable,
    String(r.federated.count),
    fixed(r.federated.mean),
    fixed(r.central.mean),
    fixed(r.federated.sd),
    fixed(r.central.sd),
    r.federated.count === r.central.count ? '=' : String(r.central.count),
  ]);
  return [
    ...formatTable(
      ['site', 'variable', 'n', 'mean (federated)', 'mean (central)', 'sd (federated)', 'sd (central)', 'n (central)'],
      rows,
    ),
    verdictLine(comparison, 'n, mean and sd'),
  ];
}

export function formatLogisticComparison(comparison: LogisticComparison): string[] {
  const rows = comparison.rows.map((r) => [
    r.name,
    fixed(r.federated),
    fixed(r.central),
    Math.abs(r.federated - r.central).toExponential(1),
    fixed(r.federatedSe, 4),
    fixed(r.centralSe, 4),
  ]);
  rows.push([
    'log-likelihood',
    fixed(comparison.logLikelihood.federated, 4),
    fixed(comparison.logLikelihood.central, 4),
    '',
    '',
    '',
  ]);
  return [
    ...formatTable(['coefficient', 'federated', 'central', '|difference|', 'se (federated)', 'se (central)'], rows),
    verdictLine(comparison, 'the coefficients') + (comparison.converged ? '' : ' (did not converge)'),
  ];
}
