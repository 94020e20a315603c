/**
 * The container contract: what an algorithm image can rely on when a site runs it. Algorithm
 * authors code against these paths and variables; the README documents them.
 */
export const CONTAINER_PATHS = {
  /** The task's config, mounted read-only. JSON configs are written as JSON; strings as-is. */
  configFile: '/pht/input/config.json',
  /** Empty at start and writable; every file left here is sent back to the registry. */
  outputDir: '/pht/output',
  /** Append JSON lines `{"current", "total", "message"}` to report progress. */
  progressFile: '/pht/progress/progress.jsonl',
  /**
   * Files for the task's trusted third party (create the folder; files directly inside it): after
   * the run they are sealed for the TTP and sent to its file service, never to the registry.
   */
  ttpOutbox: '/pht/output/ttp-outbox',
} as const;

export const CONTAINER_ENV = {
  sparqlEndpoint: 'SPARQL_ENDPOINT',
  taskId: 'PHT_TASK_ID',
  runId: 'PHT_RUN_ID',
  configFile: 'PHT_CONFIG_FILE',
  outputDir: 'PHT_OUTPUT_DIR',
  progressFile: 'PHT_PROGRESS_FILE',
  ttpOutbox: 'PHT_TTP_OUTBOX',
} as const;

/** Labels the site client puts on every container it starts, so a restarted client finds them. */
export const CONTAINER_LABELS = {
  managedBy: 'org.pht.managed-by',
  site: 'org.pht.site',
  runId: 'org.pht.run-id',
  taskId: 'org.pht.task-id',
  attempt: 'org.pht.attempt',
  /** Which registry handed out the run: run ids are only unique per registry. */
  registry: 'org.pht.registry',
} as const;
