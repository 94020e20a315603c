import type { IncomingMessage, ServerResponse } from 'node:http';
import { Router, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import type { Logger } from '../../shared/logger.js';
import type { RunAssignment } from '../../shared/types.js';
import {
  LIMITS,
  validateClaimQuery,
  validateEmptyBody,
  validateFinishReport,
  validateLogAppend,
  validateProgressReport,
} from '../../shared/schemas.js';
import { NotFoundError, RegistryError } from '../errors.js';
import type { RegistryEvents } from '../events.js';
import type { Principal } from '../store/registry-store.js';
import { WaitingPolls } from '../hand-out.js';
import { storeResultFile } from '../result-uploads.js';
import { principalOf, requireSite } from './auth.js';
import type { RegistryContext } from './context.js';
import { AssignmentSerializer, sendJsonText } from './json-answer.js';
import { filePathParam, idParam, jsonBody, query } from './request-parsing.js';
import { EmptyClaims } from '../empty-claims.js';

/**
 * How much a long poll's hold is shortened at random, as a share of the asked wait: a poll asked
 * to wait `wait` seconds is answered 204 after between (1 − HOLD_JITTER) × wait and wait.
 * Without it, sites that parked together time out together, every `wait` seconds for ever: after
 * a 10,000-site broadcast (every site re-parks within its few seconds) or a registry restart
 * (every site reconnects at once), all 10,000 polls ended and came back within a second or two,
 * and hand-outs in that second waited behind them (bench:scale, BENCHMARKS.md, issue 10). With
 * it, each round of polls spreads the wave over a further fifth of the wait.
 */
export const HOLD_JITTER = 0.2;

/**
 * The hold of a long poll asked to wait `waitSeconds`, in milliseconds: never longer than asked
 * (`wait` stays a maximum on the wire), at least (1 − HOLD_JITTER) of it.
 */
export function longPollHoldMs(waitSeconds: number, random: () => number = Math.random): number {
  const r = Math.min(1, Math.max(0, random()));
  return waitSeconds * 1000 * (1 - HOLD_JITTER * r);
}

/** Serves one long poll for work for an authenticated site; `wait` is in seconds (validated). */
export type PollForWork = (site: Principal, wait: number, req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * The long poll for work: answers with a run as soon as one is queued for the site (or handed to
 * it by a batch), or 204 once `wait` seconds have passed. Plain Node request and response: the
 * registry serves most polls without Express (app.ts).
 */
export function pollForWork(ctx: RegistryContext): PollForWork {
  const { store, events, config, logger } = ctx;
  const polls = ctx.polls ?? new WaitingPolls();
  const handedLog = new HandedRunsLog(logger, events);
  const assignments = new AssignmentSerializer();
  const empty = new EmptyClaims();
  return async (site, wait, req, res) => {
    const deadline = Date.now() + longPollHoldMs(wait);
    // While parked, a poll holds its socket, one waiter entry and one timer (issue 13, target 5):
    // the close listener is added only when the poll has to wait, and wakes it directly.
    let closed = false;
    let wakeUp: (() => void) | null = null;
    let onClose: (() => void) | null = null;
    const hungUp = () => closed || req.socket.destroyed;
    // A run claimed for this poll while it waited (a new task's batch hand-out, hand-out.ts).
    let handed: RunAssignment | null = null;
    // Whether the poll's wait ran out while it was parked.
    let timedOut = false;
    try {
      for (;;) {
        const handedRun = handed;
        handed = null;
        if (!handedRun && timedOut) {
          // The wait ran out: answered without another claim. A run queued meanwhile would have
          // woken the poll (and a lost notification only delays it): the site polls again at
          // once, and that poll claims if anything happened for the site since (EmptyClaims).
          res.writeHead(204).end();
          return;
        }
        const claimStarted = performance.now();
        let run: RunAssignment | null = handedRun;
        if (!run) {
          // Read before the claim: a run queued from here on changes it (see EmptyClaims).
          const epoch = events.siteEpoch(site.name);
          if (!empty.knownEmpty(site.id, epoch)) {
            run = await store.claimNextRun(site.id, config.leaseMs);
            empty.claimed(site.id, epoch, run !== null);
          }
        }
        if (run) {
          if (handedRun) {
            // Claimed by a batch (hand-out.ts), which is logged and announced once for all its runs.
            handedLog.add(run, site.name);
          } else {
            ctx.metrics?.handoutDuration.observe((performance.now() - claimStarted) / 1000);
            logger.info('run assigned', { runId: run.id, taskId: run.taskId, site: site.name, attempt: run.attempt });
            events.notifyTask(run.taskId);
          }
          if (hungUp()) {
            // The poller hung up between claim and answer: the lease will requeue the run.
            logger.warn('site disconnected while a run was being handed to it', { runId: run.id, site: site.name });
            return;
          }
          sendJsonText(res, 200, assignments.serialize(run));
          return;
        }
        const left = deadline - Date.now();
        if (left <= 0 || hungUp()) {
          res.writeHead(204).end();
          return;
        }
        if (!onClose) {
          onClose = () => {
            closed = true;
            wakeUp?.();
          };
          // on/off rather than once: once() wraps the listener in a bound function and a state object.
          res.on('close', onClose);
        }
        await new Promise<void>((resolve) => {
          let stopWaiting: () => void = () => undefined;
          const cancelWait = events.parkForSite(site.name, left, (expired) => {
            timedOut = expired;
            wakeUp = null;
            stopWaiting();
            resolve();
          });
          stopWaiting = polls.add(site.name, site.id, (r) => {
            handed = r;
            events.notifySite(site.name);
          });
          wakeUp = () => {
            wakeUp = null;
            cancelWait();
            stopWaiting();
            resolve();
          };
        });
        // A poller that hung up (or a registry shutting down) must not claim a run nobody will
        // get; one handed to it meanwhile goes back to the queue when its lease expires.
        if (closed) {
          const lost = handed as RunAssignment | null;
          if (lost)
            logger.warn('site disconnected while a run was being handed to it', { runId: lost.id, site: site.name });
          return;
        }
      }
    } finally {
      if (onClose) res.off('close', onClose);
    }
  };
}

/** The long poll as an Express handler (for requests the fast path in app.ts leaves to Express). */
export function nextRunHandler(ctx: RegistryContext): (req: Request, res: Response) => Promise<void> {
  const serve = pollForWork(ctx);
  return (req, res) => serve(principalOf(res), query(req, validateClaimQuery).wait ?? 0, req, res);
}

/** Routes for site clients. A site only ever sees and changes its own runs (others are 404). */
export function siteRoutes(ctx: RegistryContext): Router {
  const { store, events, files, config, logger } = ctx;
  const router = Router();
  router.use(requireSite);

  router.get('/me', (_req, res) => {
    res.json({ name: principalOf(res).name, kind: 'site' });
  });

  // The long poll for work, GET /runs/next, is mounted by app.ts in front of the API router
  // (nextRunHandler above).

  // The site's unfinished runs: what a restarted client must reconcile with its containers.
  router.get('/runs', async (_req, res) => {
    res.json(await store.listSiteRuns(principalOf(res).id, ['assigned', 'running']));
  });

  router.get('/runs/:id', async (req, res) => {
    const runId = idParam(req, 'id');
    const view = await store.getSiteRun(principalOf(res).id, runId);
    if (!view) throw new NotFoundError(`run ${runId}`);
    res.json(view);
  });

  router.post('/runs/:id/start', async (req, res) => {
    const site = principalOf(res);
    const runId = idParam(req, 'id');
    jsonBody(req, validateEmptyBody, true);
    const view = await store.startRun(site.id, runId);
    logger.info('run started', { runId, taskId: view.taskId, site: site.name });
    events.notifyTask(view.taskId);
    res.json(view);
  });

  router.post('/runs/:id/progress', async (req, res) => {
    const site = principalOf(res);
    const runId = idParam(req, 'id');
    const body = jsonBody(req, validateProgressReport);
    const view = await store.reportProgress(site.id, runId, body);
    events.notifyTask(view.taskId);
    res.json(view);
  });

  router.post('/runs/:id/log', async (req, res) => {
    const site = principalOf(res);
    const runId = idParam(req, 'id');
    const body = jsonBody(req, validateLogAppend);
    const bytes = Buffer.byteLength(body.text, 'utf8');
    if (bytes > LIMITS.logAppendBytes) {
      throw new RegistryError(
        413,
        ERROR_CODES.payloadTooLarge,
        `one log append may be at most ${LIMITS.logAppendBytes} bytes of UTF-8; this one is ${bytes}`,
      );
    }
    res.json(await store.appendLog(site.id, runId, body.text, config.limits.logBytes));
  });

  // Raw bytes, streamed to disk; never buffered, whatever the size. The name is optional in the
  // pattern only so that "/files/" with no name gets a 400 that says so, not a 404.
  router.put('/runs/:id/files{/*name}', async (req, res) => {
    const site = principalOf(res);
    const runId = idParam(req, 'id');
    const name = filePathParam(req);
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
    const stored = await storeResultFile({ store, files, limits: config.limits }, site.id, runId, name, req, declared);
    ctx.metrics?.uploadBytes.inc(stored.size);
    logger.info('result file stored', { runId, site: site.name, file: name, size: stored.size });
    res.status(201).json(stored);
  });

  router.post('/runs/:id/finish', async (req, res) => {
    const site = principalOf(res);
    const runId = idParam(req, 'id');
    const body = jsonBody(req, validateFinishReport);
    const view = await store.finishRun(site.id, runId, body);
    logger.info('run finished', {
      runId,
      taskId: view.taskId,
      site: site.name,
      state: body.state,
      exitCode: body.exitCode ?? null,
    });
    events.notifyTask(view.taskId);
    res.json(view);
  });

  // Everything under /site belongs to sites: an unknown path is a 404 here, not a fall-through
  // to the researcher routes (which would refuse a site with a misleading 403).
  router.use((req) => {
    throw new RegistryError(404, ERROR_CODES.notFound, `no route for ${req.method} ${req.baseUrl}${req.path}`);
  });

  return router;
}

/**
 * The runs a batch hand-out gave to waiting polls, logged as one line per batch: a broadcast to
 * 1,000 sites wrote 1,000 "run assigned" lines through winston, a tenth of the hand-out's CPU.
 * The line has the count, the tasks and the run id range; which site got which run is in the
 * database (each run's site and assignedAt, shown by GET /api/v1/tasks/:id), and at log level
 * debug each run still gets its own "run assigned" line. The tasks' waiters are woken once per
 * batch, not once per run.
 */
class HandedRunsLog {
  private runs: { runId: number; taskId: number; site: string; attempt: number }[] = [];
  private readonly tasks = new Set<number>();

  constructor(
    private readonly logger: Logger,
    private readonly events: RegistryEvents,
  ) {}

  add(run: RunAssignment, site: string): void {
    // A batch's runs reach their polls within one turn of the event loop: log after it.
    if (this.runs.length === 0) setImmediate(() => this.flush());
    this.runs.push({ runId: run.id, taskId: run.taskId, site, attempt: run.attempt });
    if (!this.tasks.has(run.taskId)) {
      this.tasks.add(run.taskId);
      this.events.notifyTask(run.taskId);
    }
  }

  private flush(): void {
    const runs = this.runs;
    const taskIds = [...this.tasks];
    this.runs = [];
    this.tasks.clear();
    if (runs.length === 0) return;
    let first = runs[0]!.runId;
    let last = first;
    for (const r of runs) {
      if (r.runId < first) first = r.runId;
      if (r.runId > last) last = r.runId;
    }
    this.logger.info('runs assigned to waiting polls', {
      runs: runs.length,
      taskIds,
      firstRunId: first,
      lastRunId: last,
    });
    if (this.logger.isDebugEnabled()) for (const r of runs) this.logger.debug('run assigned', { ...r, batch: true });
  }
}
