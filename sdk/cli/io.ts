/** What the CLI talks to: injected so tests can run main() in-process and read its output. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  stderr: { write(text: string): unknown };
  env: NodeJS.ProcessEnv;
}

/** Exit codes, documented in `pht --help`. */
export const EXIT = {
  ok: 0,
  /** The task failed, was cancelled, or did not finish in time. */
  taskNotCompleted: 1,
  usage: 2,
  /** The registry refused the request or could not be reached. */
  registry: 3,
} as const;

/** A mistake on the command line: the usage is printed and the exit code is 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
