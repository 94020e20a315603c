/**
 * A researcher's script: logistic regression of two-year survival on age, BMI and sex, fitted by
 * federated Newton–Raphson.
 *
 * Each round is one task: every site evaluates the model at the current coefficients on its own
 * patients and sends back the gradient and Hessian of its log-likelihood (and the log-likelihood).
 * Summed over the sites they are those of the pooled data, so the step b ← b − H⁻¹g taken here is
 * exactly the step a central analysis would take. Rounds go on until no coefficient moves more
 * than the tolerance. Copy it as a template: the SDK calls are all here.
 *
 * Standalone, against a running registry:
 *   PHT_URL=http://127.0.0.1:PORT PHT_TOKEN=… node dist/demo/researcher-logistic-regression.js [--sites a,b] [--image REF]
 */
import { runCommandLine, stringOption } from '../shared/command-line.js';
import { PhtClient } from '../sdk/index.js';
import {
  combineLogisticResults,
  fitNewtonRaphson,
  type LogisticRegressionResult,
  type NewtonRaphsonFit,
} from './federated.js';
import { OUTCOME_MODEL } from './synthetic-data.js';
import { resultsFromEverySite } from './task-results.js';

export const LOGISTIC_REGRESSION_IMAGE = '127.0.0.1:5050/pht/logistic-regression:1';

/** One Newton–Raphson round as it happened: the task, where the model was evaluated, how long it took. */
export interface LogisticRegressionRound {
  round: number;
  taskId: number;
  /** The coefficients the sites evaluated in this round. */
  coefficients: number[];
  /** Pooled log-likelihood at those coefficients. */
  logLikelihood: number;
  /** From posting the task to having every site's result. */
  durationMs: number;
}

export interface LogisticRegressionOptions {
  /** The algorithm image (default {@link LOGISTIC_REGRESSION_IMAGE}). */
  image?: string;
  /** Stop when no coefficient moves more than this in a round (default 1e-8). */
  tolerance?: number;
  maxRounds?: number;
  /** Give up waiting for one round after this long (the task keeps running at the registry). */
  roundTimeoutMs?: number;
  /** Called after every round, e.g. to print progress. */
  onRound?: (round: LogisticRegressionRound) => void;
  signal?: AbortSignal;
}

export interface FederatedLogisticRegression {
  /** Coefficients on [intercept, (age − 60)/10, (bmi − 27)/5, female], standard errors, log-likelihood. */
  fit: NewtonRaphsonFit;
  rounds: LogisticRegressionRound[];
}

/** Fits the model over the sites in `sites`, one task per Newton–Raphson round. */
export async function federatedLogisticRegression(
  pht: PhtClient,
  sites: readonly string[],
  options: LogisticRegressionOptions = {},
): Promise<FederatedLogisticRegression> {
  const { signal, roundTimeoutMs = 10 * 60_000 } = options;
  const rounds: LogisticRegressionRound[] = [];
  const evaluate = async (coefficients: number[]) => {
    const started = Date.now();
    const round = rounds.length + 1;
    const task = await pht.runTask(
      {
        image: options.image ?? LOGISTIC_REGRESSION_IMAGE,
        name: `logistic regression, round ${round}`,
        // The same feature scaling at every site, or their sums would not add up.
        config: { coefficients, standardize: OUTCOME_MODEL.standardize },
        sites: [...sites],
      },
      { timeoutMs: roundTimeoutMs, signal },
    );
    const results = await resultsFromEverySite<LogisticRegressionResult>(pht, task, sites, signal);
    const { logLikelihood } = combineLogisticResults(coefficients, results);
    const record = { round, taskId: task.id, coefficients, logLikelihood, durationMs: Date.now() - started };
    rounds.push(record);
    options.onRound?.(record);
    return results;
  };
  const fit = await fitNewtonRaphson(evaluate, {
    tolerance: options.tolerance ?? 1e-8,
    maxIterations: options.maxRounds ?? 25,
  });
  return { fit, rounds };
}

const USAGE = `Usage: node dist/demo/researcher-logistic-regression.js [--sites A,B,...] [--image IMAGE]
  Runs the federated logistic regression over the sites (default: every enabled site); needs PHT_URL and PHT_TOKEN.`;

export function main(argv: string[]): Promise<number> {
  return runCommandLine(argv, { usage: USAGE, options: { sites: 'value', image: 'value' } }, (args) =>
    research({ sites: stringOption(args, 'sites'), image: stringOption(args, 'image') }),
  );
}

async function research(values: { sites: string | undefined; image: string | undefined }): Promise<number> {
  const pht = PhtClient.fromEnv();
  try {
    const sites = values.sites
      ? values.sites.split(',')
      : (await pht.listSites()).filter((s) => s.enabled).map((s) => s.name);
    const { fit, rounds } = await federatedLogisticRegression(pht, sites, {
      image: values.image,
      onRound: (r) =>
        process.stderr.write(`round ${r.round} (task ${r.taskId}): log-likelihood ${r.logLikelihood.toFixed(6)}\n`),
    });
    process.stdout.write(JSON.stringify({ ...fit, rounds }, null, 2) + '\n');
    return fit.converged ? 0 : 1;
  } finally {
    await pht.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
