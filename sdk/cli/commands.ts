import fs from 'node:fs';
import path from 'node:path';
import { isFinalRunState, isFinalTaskStatus, TASK_STATUSES, type TaskStatus } from '../../shared/run-state.js';
import { parseDurationMs } from '../../shared/duration.js';
import { SITE_NAME_PATTERN } from '../../shared/names.js';
import type { Task } from '../../shared/types.js';
import { childSignal } from '../../shared/abortable.js';
import type { PhtClient } from '../client.js';
import { PhtResponseError, PhtTimeoutError } from '../errors.js';
import { KEY_COMMANDS, openLogIfSealed, openResultsIfSealed, sealedTaskOf } from './sealed-commands.js';
import {
  describeTask,
  expiredNote,
  runDetail,
  sitesTable,
  table,
  taskOutcome,
  taskTitle,
  tasksTable,
} from './format.js';
import { IMAGE_COMMANDS } from './image-commands.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { LinePrefixer } from './line-prefixer.js';
import { TaskProgressView } from './task-progress.js';
import { terminalSafeJson, visible } from './terminal-text.js';

export interface CommandContext {
  client: PhtClient;
  flags: Record<string, string | true>;
  args: string[];
  io: CliIo;
  /** --json: stdout gets one JSON document (or JSON lines when following logs) and nothing else. */
  json: boolean;
}

export interface Command {
  /** The words that select it: "task create", "sites". */
  name: string;
  /** Its arguments and options as shown in the usage. */
  synopsis: string;
  summary: string;
  args: string[];
  valueFlags: string[];
  booleanFlags: string[];
  /** Needs no registry (e.g. making a key pair): runs without --url and --token. */
  offline?: boolean;
  run(ctx: CommandContext): Promise<number>;
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'task create',
    synopsis:
      '--image IMG [--config FILE] [--sites a,b] [--project P] [--name N] [--wait] [--timeout S] [--encrypt [--recipients user:b,…] [--ttp NAME]]',
    summary:
      'post a task (to every enabled site unless --sites); --wait waits for it to finish; --encrypt seals the config for the sites and asks for results sealed to you',
    args: [],
    valueFlags: ['image', 'config', 'sites', 'name', 'timeout', 'project', 'recipients', 'ttp'],
    booleanFlags: ['wait', 'encrypt'],
    run: createTask,
  },
  {
    name: 'task wait',
    synopsis: 'ID [--timeout S]',
    summary: 'wait for a task to finish',
    args: ['ID'],
    valueFlags: ['timeout'],
    booleanFlags: [],
    run: async (ctx) => waitAndReport(ctx, taskId(ctx), timeoutFlag(ctx)),
  },
  {
    name: 'task show',
    synopsis: 'ID',
    summary: 'a task and the state of its runs',
    args: ['ID'],
    valueFlags: [],
    booleanFlags: [],
    run: async (ctx) => {
      const task = await ctx.client.getTask(taskId(ctx));
      ctx.io.stdout.write(ctx.json ? toJson(task) : describeTask(task));
      return EXIT.ok;
    },
  },
  {
    name: 'task list',
    synopsis: '[--status S] [--limit N] [--offset N]',
    summary: 'your tasks, newest first',
    args: [],
    valueFlags: ['status', 'limit', 'offset'],
    booleanFlags: [],
    run: listTasks,
  },
  {
    name: 'task logs',
    synopsis: 'ID [--follow]',
    summary: "every run's log, each line prefixed by its site; --follow until the runs finish",
    args: ['ID'],
    valueFlags: [],
    booleanFlags: ['follow'],
    run: showLogs,
  },
  {
    name: 'task results',
    synopsis: 'ID --out DIR',
    summary: "download every run's result files to DIR/<site>/...",
    args: ['ID'],
    valueFlags: ['out'],
    booleanFlags: [],
    run: saveResults,
  },
  {
    name: 'task cancel',
    synopsis: 'ID',
    summary: "stop a task's unfinished runs",
    args: ['ID'],
    valueFlags: [],
    booleanFlags: [],
    run: async (ctx) => {
      const task = await ctx.client.cancelTask(taskId(ctx));
      if (ctx.json) ctx.io.stdout.write(toJson(task));
      else {
        const stopping = task.runs.filter((r) => r.cancelRequested && !isFinalRunState(r.status)).length;
        ctx.io.stdout.write(
          `${taskTitle(task)}: ${task.status}${stopping > 0 ? ` (${stopping} running run${stopping === 1 ? '' : 's'} asked to stop)` : ''}\n`,
        );
      }
      return EXIT.ok;
    },
  },
  ...KEY_COMMANDS,
  {
    name: 'task delete',
    synopsis: 'ID',
    summary: 'delete a finished task with its runs, logs and result files at the registry',
    args: ['ID'],
    valueFlags: [],
    booleanFlags: [],
    run: async (ctx) => {
      const deleted = await ctx.client.deleteTask(taskId(ctx));
      ctx.io.stdout.write(
        ctx.json
          ? toJson(deleted)
          : `task ${deleted.id} deleted with ${deleted.runs} run${deleted.runs === 1 ? '' : 's'} and ${deleted.files} result file${deleted.files === 1 ? '' : 's'}\n`,
      );
      return EXIT.ok;
    },
  },
  {
    name: 'sites',
    synopsis: '',
    summary: 'the sites known to the registry',
    args: [],
    valueFlags: [],
    booleanFlags: [],
    run: async (ctx) => {
      const sites = await ctx.client.listSites();
      ctx.io.stdout.write(ctx.json ? toJson(sites) : sites.length > 0 ? sitesTable(sites) : 'no sites\n');
      return EXIT.ok;
    },
  },
  ...IMAGE_COMMANDS,
];

async function createTask(ctx: CommandContext): Promise<number> {
  const image = stringFlag(ctx, 'image');
  if (image === undefined) throw new UsageError('task create needs --image IMG');
  const configFile = stringFlag(ctx, 'config');
  const config = configFile === undefined ? undefined : readJsonFile(configFile);
  const sitesFlag = stringFlag(ctx, 'sites');
  const sites = sitesFlag
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (sites !== undefined && sites.length === 0) throw new UsageError('--sites needs at least one site name');
  const wait = ctx.flags.wait === true;
  const timeoutMs = timeoutFlag(ctx);
  if (timeoutMs !== undefined && !wait) throw new UsageError('--timeout only makes sense with --wait');
  const request = { image, config, sites, name: stringFlag(ctx, 'name'), project: stringFlag(ctx, 'project') };
  const sealed = sealedTaskOf(ctx);
  const task = sealed ? await sealed(request) : await ctx.client.createTask(request);
  if (!wait) {
    ctx.io.stdout.write(
      ctx.json
        ? toJson(task)
        : `created ${taskTitle(task)} with ${task.runs.length} run${task.runs.length === 1 ? '' : 's'}: ${task.runs.map((r) => visible(r.site)).join(', ')}\n`,
    );
    return EXIT.ok;
  }
  if (!ctx.json) ctx.io.stdout.write(`created ${taskTitle(task)}\n`);
  return waitAndReport(ctx, task.id, timeoutMs);
}

/** Waits for the task, showing its runs as they change; the exit code says how it ended. */
async function waitAndReport(ctx: CommandContext, id: number, timeoutMs: number | undefined): Promise<number> {
  const view = ctx.json ? null : new TaskProgressView(ctx.io.stdout);
  let task: Task;
  try {
    task = await ctx.client.waitForTask(id, { timeoutMs, onUpdate: view ? (t) => view.update(t) : undefined });
  } catch (e) {
    // A task that is merely slow is the task's outcome (exit 1), not a registry failure.
    if (!(e instanceof PhtTimeoutError) || !e.task) throw e;
    if (ctx.json) ctx.io.stdout.write(toJson(e.task));
    ctx.io.stderr.write(
      `pht: ${taskTitle(e.task)} did not finish within ${formatMs(e.timeoutMs)}; it is ${e.task.status} and keeps running (stop it with: pht task cancel ${id})\n`,
    );
    return EXIT.taskNotCompleted;
  }
  if (ctx.json) ctx.io.stdout.write(toJson(task));
  else {
    ctx.io.stdout.write(`${taskOutcome(task)}\n`);
    if (task.runs.some((r) => r.status === 'completed'))
      ctx.io.stdout.write(`results: pht task results ${task.id} --out DIR\n`);
  }
  return task.status === 'completed' ? EXIT.ok : EXIT.taskNotCompleted;
}

async function listTasks(ctx: CommandContext): Promise<number> {
  const status = stringFlag(ctx, 'status');
  if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${TASK_STATUSES.join(', ')}`);
  }
  const limit = integerFlag(ctx, 'limit', 1, 500);
  const offset = integerFlag(ctx, 'offset', 0, Number.MAX_SAFE_INTEGER);
  const list = await ctx.client.listTasks({ status: status as TaskStatus | undefined, limit, offset });
  if (ctx.json) {
    ctx.io.stdout.write(toJson(list));
    return EXIT.ok;
  }
  if (list.tasks.length === 0) {
    ctx.io.stdout.write(list.total > 0 ? `no tasks at offset ${list.offset} (${list.total} in all)\n` : 'no tasks\n');
    return EXIT.ok;
  }
  ctx.io.stdout.write(tasksTable(list.tasks));
  const shownTo = list.offset + list.tasks.length;
  if (list.offset > 0 || shownTo < list.total) {
    ctx.io.stdout.write(
      `tasks ${list.offset + 1}–${shownTo} of ${list.total}${shownTo < list.total ? ` (more with --offset ${shownTo})` : ''}\n`,
    );
  }
  return EXIT.ok;
}

async function showLogs(ctx: CommandContext): Promise<number> {
  const task = await ctx.client.getTask(taskId(ctx));
  const width = Math.max(0, ...task.runs.map((r) => r.site.length));
  const prefixer = (site: string) =>
    new LinePrefixer(`[${visible(site)}]`.padEnd(width + 3), (text) => ctx.io.stdout.write(text));
  if (ctx.flags.follow !== true) {
    const logs: { site: string; runId: number; status: string; log: string | null; logExpiredAt: string | null }[] = [];
    for (const run of task.runs)
      logs.push({
        site: run.site,
        runId: run.id,
        status: run.status,
        // Removed by retention: the run view says so, no need to ask for a 410.
        log: run.logExpiredAt ? null : openLogIfSealed(ctx, await ctx.client.getRunLog(run.id)),
        logExpiredAt: run.logExpiredAt ?? null,
      });
    if (ctx.json) ctx.io.stdout.write(toJson({ taskId: task.id, runs: logs }));
    else {
      for (const { site, log, logExpiredAt } of logs) {
        const p = prefixer(site);
        p.push(log ?? `${expiredNote('log', logExpiredAt!)}\n`);
        p.flush();
      }
    }
    return EXIT.ok;
  }
  // Every run's log at once, interleaved line by line; the first failure stops the others.
  const stop = childSignal();
  const failures: unknown[] = [];
  const follows = task.runs.map(async (run) => {
    const p = prefixer(run.site);
    if (run.logExpiredAt) {
      // Final, and its log removed by retention: nothing to follow.
      if (ctx.json)
        ctx.io.stdout.write(terminalSafeJson({ site: run.site, runId: run.id, logExpiredAt: run.logExpiredAt }) + '\n');
      else p.push(`${expiredNote('log', run.logExpiredAt)}\n`);
      p.flush();
      return;
    }
    const onText = ctx.json
      ? (text: string) =>
          ctx.io.stdout.write(
            terminalSafeJson({ site: run.site, runId: run.id, text: openLogIfSealed(ctx, text) }) + '\n',
          )
      : (text: string) => p.push(openLogIfSealed(ctx, text));
    try {
      await ctx.client.followRunLog(run.id, { onText, signal: stop.signal });
    } catch (e) {
      // The others then fail with the abort: only the first failure is worth reporting.
      failures.push(e);
      stop.stop();
    } finally {
      p.flush();
    }
  });
  await Promise.all(follows);
  if (failures.length > 0) throw failures[0];
  return EXIT.ok;
}

async function saveResults(ctx: CommandContext): Promise<number> {
  const out = stringFlag(ctx, 'out');
  if (out === undefined) throw new UsageError('task results needs --out DIR');
  const task = await ctx.client.getTask(taskId(ctx));
  if (!isFinalTaskStatus(task.status))
    ctx.io.stderr.write(`pht: ${taskTitle(task)} is ${task.status}; results may be incomplete\n`);
  // Every folder is checked before anything is written.
  const folders = task.runs.map((run) => siteFolder(out, run.site));
  const runs = [];
  for (const [i, run] of task.runs.entries()) {
    const { filesExpiredAt } = run;
    if (filesExpiredAt)
      ctx.io.stderr.write(`pht: run ${run.id} (${visible(run.site)}): ${expiredNote('files', filesExpiredAt)}\n`);
    // Files removed by retention are not asked for (that would be a 410): the run has none to save.
    const files = filesExpiredAt
      ? []
      : await openResultsIfSealed(ctx, await ctx.client.saveRunFiles(run.id, folders[i]!));
    runs.push({
      site: run.site,
      runId: run.id,
      status: run.status,
      detail: runDetail(run),
      files,
      filesExpiredAt: filesExpiredAt ?? null,
    });
  }
  if (ctx.json) {
    ctx.io.stdout.write(
      toJson({
        taskId: task.id,
        status: task.status,
        dir: path.resolve(out),
        runs: runs.map(({ detail: _detail, ...r }) => r),
      }),
    );
    return EXIT.ok;
  }
  const rows = runs.flatMap((r) => r.files.map((f) => [r.site, path.relative(out, f.path) || f.name, String(f.size)]));
  if (rows.length > 0) ctx.io.stdout.write(table(['SITE', 'FILE', 'BYTES'], rows));
  const withFiles = runs.filter((r) => r.files.length > 0).length;
  ctx.io.stdout.write(
    `saved ${rows.length} file${rows.length === 1 ? '' : 's'} from ${withFiles} of ${runs.length} runs to ${out}\n`,
  );
  return EXIT.ok;
}

function toJson(value: unknown): string {
  return terminalSafeJson(value, 2) + '\n';
}

/**
 * DIR/<site>: the site name comes from the registry's answer, so it must be a site name and the
 * folder must stay inside DIR whatever the registry says (a hostile one sent "../../x").
 */
export function siteFolder(out: string, site: string): string {
  const root = path.resolve(out);
  const folder = path.resolve(root, site);
  const inside = path.relative(root, folder);
  if (
    !new RegExp(SITE_NAME_PATTERN).test(site) ||
    inside !== site ||
    inside.startsWith('..') ||
    path.isAbsolute(inside)
  ) {
    throw new PhtResponseError(
      `the registry named a site ${visible(JSON.stringify(site).slice(0, 80))}, which is not a valid site name; nothing is saved for it`,
      'GET',
      '/tasks',
    );
  }
  return folder;
}

function stringFlag(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.flags[name];
  if (value === true) throw new UsageError(`--${name} needs a value`);
  return value;
}

function integerFlag(ctx: CommandContext, name: string, min: number, max: number): number | undefined {
  const raw = stringFlag(ctx, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
  return n;
}

function taskId(ctx: CommandContext): number {
  const raw = ctx.args[0]!;
  if (!/^[1-9][0-9]{0,14}$/.test(raw)) throw new UsageError(`task ID must be a positive integer, got "${raw}"`);
  return Number(raw);
}

/** --timeout: seconds ("90") or a duration ("90s", "5m", "2h"). */
function timeoutFlag(ctx: CommandContext): number | undefined {
  const raw = stringFlag(ctx, 'timeout');
  if (raw === undefined) return undefined;
  try {
    return parseDurationMs(/^[0-9]+(\.[0-9]+)?$/.test(raw) ? Number(raw) : raw);
  } catch {
    throw new UsageError(`--timeout must be seconds or a duration like 90s, 5m or 2h, got "${raw}"`);
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read --config file ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config file ${file} is not valid JSON: ${(e as Error).message}`);
  }
}
