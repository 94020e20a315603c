import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { isFinalTaskStatus } from '../../shared/run-state.js';
import {
  LIMITS,
  validateCreateTask,
  validateEmptyBody,
  validateEmptyQuery,
  validateTaskListQuery,
  validateTaskWaitQuery,
} from '../../shared/schemas.js';
import type { RunDetail, Task, TaskDeleted, TaskWaitResult } from '../../shared/types.js';
import { NotFoundError, RegistryError } from '../errors.js';
import { refuseUnsealableTask } from '../sealed-tasks.js';
import type { Principal } from '../store/registry-store.js';
import { principalOf, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import { sendJsonText } from './json-answer.js';
import { filePathParam, idParam, jsonBody, query } from './request-parsing.js';

const SSE_COALESCE_MS = 250;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * POST /tasks. Mounted by app.ts on a router of its own in front of the API's routers (issue 13,
 * target 3: the routers a creation used to walk past were a visible share of its CPU), behind the
 * same authentication, body parsing and depth limit, and refusing non-researchers like
 * researcherRoutes does.
 */
export function createTaskHandler(ctx: RegistryContext) {
  const { store, events, config } = ctx;
  return async (req: Request, res: Response): Promise<void> => {
    const principal = principalOf(res);
    const body = jsonBody(req, validateCreateTask);
    const configBytes = Buffer.from(JSON.stringify(body.config ?? null), 'utf8');
    if (configBytes.length > config.limits.configBytes) {
      throw new RegistryError(
        413,
        ERROR_CODES.payloadTooLarge,
        `config is ${configBytes.length} bytes; the limit is ${config.limits.configBytes}`,
      );
    }
    if (ctx.keys) await refuseUnsealableTask(ctx.keys, body.config, body.sites ?? null);
    const task = await store.createTask(
      principal,
      {
        name: body.name ?? null,
        image: body.image,
        config: configBytes,
        configType: 'application/json',
        sites: body.sites ?? null,
        project: body.project ?? null,
      },
      { maxOpenTasks: config.limits.openTasksPerUser, maxConfigBytes: config.limits.configBytesPerUser },
    );
    ctx.logger.info('task created', {
      taskId: task.id,
      owner: principal.name,
      image: task.image,
      sites: task.runs.length,
    });
    // A task for a few sites is handed to their waiting polls before the researcher's answer: the
    // site's wait is what a researcher notices, and the claim costs about as much as the answer
    // (bench:celery put the hand-out 22 % faster this way). The answer is then read again, so it
    // shows the runs as handed out. A broadcast answers first: its claim takes ~0.1 ms per site.
    const handOutFirst = task.runs.length <= HAND_OUT_BEFORE_ANSWER_MAX_SITES;
    // Straight through Node's response: Express's res.json (content-type parsing, charset
    // lookup, an ETag hash of the body) was a visible share of a creation's CPU (bench:capacity).
    const answer = (created: Task) => {
      res.setHeader('Location', `/api/v1/tasks/${created.id}`);
      sendJsonText(res, 201, JSON.stringify(created));
    };
    if (!handOutFirst) answer(task);
    // Polls already waiting get their run from one claim for all their sites; the rest are woken
    // to claim for themselves.
    let handed = new Set<string>();
    // Sites whose polls wait on other registry processes are told first: this process's own claim
    // takes seconds at 10,000 sites, and their claims waited for it (bench:scale).
    const told = new Set<string>();
    // Before anything can see the runs: a poll of these sites asks the database again.
    for (const run of task.runs) events.markSite(run.site);
    if (ctx.polls)
      for (const run of task.runs)
        if (!ctx.polls.has(run.site)) {
          told.add(run.site);
          events.notifySite(run.site);
        }
    try {
      if (ctx.polls) handed = await ctx.polls.offer(store, new Set(task.runs.map((r) => r.site)), config.leaseMs);
    } catch (e) {
      ctx.logger.error('batch hand-out failed; waking the sites instead', { taskId: task.id, error: String(e) });
    }
    if (handOutFirst) {
      answer(handed.size > 0 ? ((await store.getTask(task.id))?.task ?? task) : task);
    }
    // Sites told already are woken here only (a poll that parked here meanwhile).
    for (const run of task.runs) {
      if (handed.has(run.site)) continue;
      if (told.has(run.site)) events.deliver('site', run.site);
      else events.notifySite(run.site);
    }
  };
}

/** Routes for researchers and admins: tasks, their runs, logs and result files. */

/** Tasks for at most this many sites are handed to waiting polls before the POST is answered. */
const HAND_OUT_BEFORE_ANSWER_MAX_SITES = 8;
export function researcherRoutes(ctx: RegistryContext): Router {
  const { store, events, files } = ctx;
  const router = Router();
  router.use(requireUser);

  /** A task the caller may see: its owner's, or any for an admin. Others get the same 404. */
  async function visibleTask(principal: Principal, taskId: number): Promise<Task> {
    const owned = await store.getTask(taskId);
    if (!owned || (principal.role !== 'admin' && owned.ownerId !== principal.id))
      throw new NotFoundError(`task ${taskId}`);
    return owned.task;
  }

  async function visibleRun(principal: Principal, runId: number): Promise<RunDetail> {
    const owned = await store.getRun(runId);
    if (!owned || (principal.role !== 'admin' && owned.ownerId !== principal.id))
      throw new NotFoundError(`run ${runId}`);
    return owned.run;
  }

  /** 410 when retention (master/retention.ts) removed this run's log or files. */
  async function refuseExpired(runId: number, part: 'log' | 'files'): Promise<void> {
    const expired = await store.expiredParts(runId);
    if (part === 'log' && expired?.log)
      throw new RegistryError(410, ERROR_CODES.logExpired, `the log of run ${runId} was removed by retention`);
    if (part === 'files' && expired?.files)
      throw new RegistryError(
        410,
        ERROR_CODES.filesExpired,
        `the result files of run ${runId} were removed by retention`,
      );
  }

  router.get('/me', (_req, res) => {
    const p = principalOf(res);
    res.json({ name: p.name, kind: p.kind, role: p.role });
  });

  router.get('/tasks', async (req, res) => {
    const principal = principalOf(res);
    const q = query(req, validateTaskListQuery);
    // The schema fills in the defaults and refuses values out of bounds.
    const limit = q.limit ?? LIMITS.defaultPageSize;
    const offset = q.offset ?? 0;
    const { tasks, total } = await store.listTasks({
      ownerId: principal.role === 'admin' ? null : principal.id,
      status: q.status ?? null,
      limit,
      offset,
    });
    res.json({ tasks, total, limit, offset });
  });

  router.get('/tasks/:id', async (req, res) => {
    query(req, validateEmptyQuery);
    res.json(await visibleTask(principalOf(res), idParam(req, 'id')));
  });

  router.delete('/tasks/:id', async (req, res) => {
    const principal = principalOf(res);
    const taskId = idParam(req, 'id');
    await visibleTask(principal, taskId);
    const deleted = await store.deleteTask(taskId);
    if (!deleted) throw new NotFoundError(`task ${taskId}`);
    // Rows first, files after: a crash in between leaves only files no run refers to, and the
    // registry removes those when it starts (never a row pointing at a missing file).
    for (const storedAs of deleted.storedFiles) files.remove(storedAs);
    ctx.logger.info('task deleted', {
      taskId,
      by: principal.name,
      runs: deleted.runs,
      files: deleted.storedFiles.length,
    });
    events.notifyTask(taskId);
    const body: TaskDeleted = { id: taskId, runs: deleted.runs, files: deleted.storedFiles.length };
    res.json(body);
  });

  // Long poll: answers as soon as every run is final, or with done=false when the wait is over.
  router.get('/tasks/:id/wait', async (req, res) => {
    const principal = principalOf(res);
    const taskId = idParam(req, 'id');
    const q = query(req, validateTaskWaitQuery);
    const deadline = Date.now() + (q.timeout ?? 30) * 1000;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    await visibleTask(principal, taskId);
    for (;;) {
      // Each wake-up reads only the task's status: a task at a thousand sites changes thousands
      // of times, and loading all its runs each time was most of the registry's CPU.
      const status = await store.getTaskStatus(taskId);
      const done = status !== null && isFinalTaskStatus(status);
      const left = deadline - Date.now();
      if (done || left <= 0 || abort.signal.aborted) {
        const body: TaskWaitResult = { ...(await visibleTask(principal, taskId)), done };
        res.json(body);
        return;
      }
      await events.waitForTask(taskId, left, abort.signal);
      // Nobody is listening any more; the database may already be closed (registry shutdown).
      if (abort.signal.aborted) return;
    }
  });

  // Server-sent events: one `task` event now and on every change, until the task is final.
  router.get('/tasks/:id/events', async (req, res) => {
    const principal = principalOf(res);
    const taskId = idParam(req, 'id');
    await visibleTask(principal, taskId);
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    // A HEAD answer has no body, so Node would hold its headers back until the stream ended (only
    // when the task is final): answer the headers alone now.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    let last = '';
    while (!abort.signal.aborted) {
      const task = await visibleTask(principal, taskId);
      const data = JSON.stringify(task);
      if (data !== last) {
        res.write(`event: task\ndata: ${data}\n\n`);
        last = data;
      }
      if (isFinalTaskStatus(task.status)) break;
      await events.waitForTask(taskId, 15_000, abort.signal);
      if (!abort.signal.aborted) res.write(': keep-alive\n\n');
      // Coalesce bursts of changes into one event: a full task is costly to build for large tasks.
      await sleep(SSE_COALESCE_MS, abort.signal);
    }
    res.end();
  });

  router.post('/tasks/:id/cancel', async (req, res) => {
    const principal = principalOf(res);
    const taskId = idParam(req, 'id');
    jsonBody(req, validateEmptyBody, true);
    const task = await visibleTask(principal, taskId);
    if (isFinalTaskStatus(task.status)) {
      res.json(task);
      return;
    }
    const cancelled = await store.cancelTask(taskId);
    ctx.logger.info('task cancelled', { taskId, by: principal.name });
    events.notifyTask(taskId);
    for (const run of cancelled.runs) events.notifySite(run.site);
    res.json(cancelled);
  });

  router.get('/runs/:id', async (req, res) => {
    res.json(await visibleRun(principalOf(res), idParam(req, 'id')));
  });

  router.get('/runs/:id/log', async (req, res) => {
    const run = await visibleRun(principalOf(res), idParam(req, 'id'));
    await refuseExpired(run.id, 'log');
    res.type('text/plain; charset=utf-8').send(await store.readLog(run.id));
  });

  router.get('/runs/:id/files', async (req, res) => {
    const run = await visibleRun(principalOf(res), idParam(req, 'id'));
    await refuseExpired(run.id, 'files');
    res.json(await store.listFiles(run.id));
  });

  router.get('/runs/:id/files/*name', async (req, res) => {
    const run = await visibleRun(principalOf(res), idParam(req, 'id'));
    const name = filePathParam(req);
    await refuseExpired(run.id, 'files');
    const file = await store.getFile(run.id, name);
    if (!file) throw new NotFoundError(`file "${name}" of run ${run.id}`);
    res.writeHead(200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(file.size),
      'Content-Disposition': `attachment; filename="${name.split('/').pop()}"`,
      'X-Content-SHA256': file.sha256,
      'X-Content-Type-Options': 'nosniff',
    });
    await pipeline(fs.createReadStream(files.pathOf(file.storedAs)), res);
  });

  router.get('/sites', async (_req, res) => {
    res.json(await store.listSites());
  });

  return router;
}
