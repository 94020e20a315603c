/**
 * How a long-running PHT program (registry, file service) lives and ends as a process: one place
 * for the signal handling and the exit code, so every program behaves the same under Ctrl-C.
 */

/** Resolves after a clean shutdown on SIGINT/SIGTERM; a second signal exits at once (130). */
export function waitForSignal(
  logger: { info: (message: string) => unknown },
  shutdown: () => Promise<void>,
): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      logger.info(`received ${signal}, shutting down`);
      shutdown().then(resolve, () => process.exit(1));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Runs a program's main with the command line and sets the exit code; a stray error exits 1 with its stack. */
export function runProgram(main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
