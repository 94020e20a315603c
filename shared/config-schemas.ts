/** JSON schemas of the programs' config files (`additionalProperties: false` everywhere). */
import { sitePolicySchema } from './site-policy-schema.js';
import { DURATION_SCHEMA } from './duration.js';
import { LIMITS } from './schemas.js';

/**
 * Where a program serves GET /metrics (Prometheus): absent, no listener. Loopback by default;
 * port 0 picks a free port (tests).
 */
const METRICS_LISTENER_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: {
    host: { type: 'string', minLength: 1, default: '127.0.0.1' },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
  },
} as const;

export const masterConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, default: 5000 },
    host: { type: 'string', minLength: 1, default: '0.0.0.0' },
    dataDir: { type: 'string', minLength: 1, default: './data' },
    /**
     * A postgres:// URL puts the registry's records in PostgreSQL (several registry processes may
     * then share it); absent, they stay in <dataDir>/registry.sqlite.
     */
    database: { type: 'string', pattern: '^postgres(ql)?://[^\\s]+$' },
    /** Database connections each registry process keeps at most (PostgreSQL only). */
    databasePoolSize: { type: 'integer', minimum: 1, maximum: 1000, default: 10 },
    logLevel: { enum: ['error', 'warn', 'info', 'debug'], default: 'info' },
    metrics: METRICS_LISTENER_SCHEMA,
    /** An assigned run whose site does not start it within the lease goes back to the queue. */
    lease: { ...DURATION_SCHEMA, default: '60s' },
    /** How often expired leases and unconfirmed cancellations are swept. */
    sweepInterval: { ...DURATION_SCHEMA, default: '5s' },
    /**
     * Finished runs' logs and result files are removed once this old (master/retention.ts); the
     * run itself stays. Absent: kept forever.
     */
    retention: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        logs: DURATION_SCHEMA,
        files: DURATION_SCHEMA,
        /** Finished tasks are deleted whole (runs, logs, files, the task) this long after they ended. */
        runs: DURATION_SCHEMA,
        /** How often the sweep looks for something to expire. */
        interval: { ...DURATION_SCHEMA, default: '1h' },
        /** Runs per transaction: bounds how long one batch holds the write lock. */
        batch: { type: 'integer', minimum: 1, maximum: 10000, default: 500 },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        jsonBodyBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        configBytes: { type: 'integer', minimum: 2, default: 1048576 },
        resultFileBytes: { type: 'integer', minimum: 1, default: 4294967296 },
        runResultBytes: { type: 'integer', minimum: 1, default: 8589934592 },
        filesPerRun: { type: 'integer', minimum: 1, default: 10000 },
        logBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        maxConnections: { type: 'integer', minimum: 1, default: 20000 },
        /** Open connections one remote address may hold; more are closed at once. */
        connectionsPerAddress: { type: 'integer', minimum: 1, default: 2048 },
        headersTimeout: { ...DURATION_SCHEMA, default: '20s' },
        requestTimeout: { ...DURATION_SCHEMA, default: '2h' },
        /** A request body that sends nothing for this long has its connection closed. */
        bodyIdleTimeout: { ...DURATION_SCHEMA, default: '30s' },
        /** Unfinished tasks one researcher may have at once (429 too_many_open_tasks beyond). */
        openTasksPerUser: { type: 'integer', minimum: 1, default: 1000 },
        /** Config bytes of all the tasks one researcher keeps (413 config_quota_exceeded beyond). */
        configBytesPerUser: { type: 'integer', minimum: 2, default: 67108864 },
      },
    },
  },
} as const;

export const clientConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['registryUrl', 'apiKey', 'sparqlEndpoint', 'allowedImages'],
  // Keys starting with "//" are comments, so config.example.json can document itself.
  patternProperties: { '^//': {} },
  properties: {
    registryUrl: { type: 'string', pattern: '^https?://[^\\s]+$' },
    apiKey: { type: 'string', minLength: 8 },
    sparqlEndpoint: { type: 'string', pattern: '^https?://[^\\s]+$' },
    /**
     * Regular expressions that must match the whole image reference. An entry starting with
     * "glob:" is a micromatch glob instead (e.g. "glob:127.0.0.1:5050/pht/**").
     */
    allowedImages: { type: 'array', items: { type: 'string', minLength: 1 } },
    pullPolicy: { enum: ['always', 'if-not-present', 'never'], default: 'always' },
    workDir: { type: 'string', minLength: 1, default: './pht-work' },
    concurrency: { type: 'integer', minimum: 1, maximum: 64, default: 1 },
    dockerSocket: { type: 'string', minLength: 1, default: '/var/run/docker.sock' },
    /** Container user; the default is nobody. Anything else must be allowed here explicitly. */
    containerUser: { type: 'string', pattern: '^[0-9]{1,10}:[0-9]{1,10}$', default: '65534:65534' },
    keepOnFailure: { type: 'boolean', default: false },
    auditLog: { type: 'string', minLength: 1 },
    logLevel: { enum: ['error', 'warn', 'info', 'debug'], default: 'info' },
    metrics: METRICS_LISTENER_SCHEMA,
    /** End-to-end encryption: the site's key pair and the fingerprints it trusts (see README). */
    keys: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        /** The site's private key (mode 0600); default <workDir>/keys/site.key. */
        keyFile: { type: 'string', minLength: 1 },
        /** Fingerprints learned on first use; default <workDir>/keys/pins.json. */
        pinsFile: { type: 'string', minLength: 1 },
        /** Fingerprints an operator pins, e.g. {"user:alice": "SHA256:…"}: they win over first use. */
        pinned: {
          type: 'object',
          default: {},
          propertyNames: { pattern: '^(site|user|ttp):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$' },
          additionalProperties: { type: 'string', pattern: '^SHA256:[A-Za-z0-9_-]{43}$' },
        },
        /** Sender API keys of TTP file services, by TTP name: where the run's TTP outbox goes. */
        ttpApiKeys: {
          type: 'object',
          default: {},
          propertyNames: { pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' },
          additionalProperties: { type: 'string', minLength: 8 },
        },
        /** At a TTP: its file service and reader token; runs asking for `ttpInbox` get the files. */
        ttpInbox: {
          type: 'object',
          additionalProperties: false,
          required: ['url', 'token'],
          properties: {
            url: { type: 'string', pattern: '^https?://[^\\s]+$' },
            token: { type: 'string', minLength: 8 },
          },
        },
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        /**
         * gateway: an internal Docker network whose only reachable service is the client's SPARQL
         * gateway (default); none: no network at all; bridge: Docker's default bridge (explicit
         * opt-in: it routes to the outside world); named: an existing network of the site's.
         */
        mode: { enum: ['gateway', 'none', 'bridge', 'named'], default: 'gateway' },
        name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' },
        subnet: { type: 'string', pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$' },
        /** For bridge/named modes: the SPARQL URL the container should use. */
        sparqlEndpointForContainer: { type: 'string', pattern: '^https?://[^\\s]+$' },
        /**
         * gateway mode when the host firewall rules cannot be put in place: false (default) refuses
         * to run containers; true runs them with no network at all, with a loud audit entry.
         */
        fallbackToNone: { type: 'boolean', default: false },
      },
    },
    gateway: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        allowUpdates: { type: 'boolean', default: false },
        maxResponseBytes: { type: 'integer', minimum: 1024, default: 67108864 },
        queryTimeout: { ...DURATION_SCHEMA, default: '120s' },
        /** Open connections from one run's container, and from all containers together. */
        maxConnectionsPerRun: { type: 'integer', minimum: 1, maximum: 10000, default: 16 },
        maxConnections: { type: 'integer', minimum: 1, maximum: 100000, default: 256 },
        /** A connection with no request in progress for this long is closed. */
        idleTimeout: { ...DURATION_SCHEMA, default: '10s' },
        /**
         * Graphs a query may name in FROM / FROM NAMED (IRIs). Empty (default): queries naming a
         * graph are refused, so a container sees only the endpoint's default dataset.
         */
        allowedGraphs: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 2048 }, default: [] },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        memoryMb: { type: 'integer', minimum: 16, default: 1024 },
        cpus: { type: 'number', exclusiveMinimum: 0, maximum: 256, default: 1 },
        pids: { type: 'integer', minimum: 8, default: 256 },
        timeout: { ...DURATION_SCHEMA, default: '1h' },
        outputBytes: { type: 'integer', minimum: 1, default: 1073741824 },
        outputFiles: { type: 'integer', minimum: 1, default: 1000 },
        logBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        tmpfsMb: { type: 'integer', minimum: 1, default: 64 },
        /** The progress file: beyond this many bytes the run fails. */
        progressBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        /**
         * loop-image (default): output and progress live on a loop-mounted ext4 image per run
         * (size and file count enforced by the kernel; needs root). unenforced: plain folders,
         * checked only by the client (an explicit opt-in, e.g. for a developer's machine).
         */
        disk: { enum: ['loop-image', 'unenforced'], default: 'loop-image' },
      },
    },
    poll: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        /** Seconds a long poll waits at the registry (0 = plain polling). */
        // The registry refuses a longer wait.
        longPollSeconds: { type: 'integer', minimum: 0, maximum: LIMITS.maxWaitSeconds, default: 30 },
        /** Pause between polls when plain polling, or after an empty long poll: a duration or a node-cron expression. */
        schedule: { type: 'string', minLength: 1, default: '1s' },
        maxBackoff: { ...DURATION_SCHEMA, default: '60s' },
        /** How often a running run asks the registry whether it was cancelled. */
        cancelCheck: { ...DURATION_SCHEMA, default: '2s' },
      },
    },
    /** What may run and what may leave (shared/site-policy-schema.ts); off by default. */
    policy: sitePolicySchema,
  },
} as const;
