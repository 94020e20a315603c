import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readAuditEntries } from '../audit-log.js';
import { validPostedBy } from '../policy/run-gate.js';
import { ReviewFolder } from '../policy/review-folder.js';
import { parseCommandArgs, parseRunId, UsageError } from './args.js';
import { summariseRuns } from './audit-report.js';
import type { CommandIo, SiteFiles } from './site-files.js';

export const REVIEW_USAGE = `Usage: node client review RUN [--json] [--config FILE]
       node client approve RUN [--config FILE]
       node client reject RUN --reason TEXT [--config FILE]
  A run held by the site's output policy waits for the officer: review shows its files (first
  lines of each text file), its held log and progress, and the SPARQL queries it made; approve
  sends them; reject ends the run "rejected" with the reason and nothing leaves.`;

/** A held run as the officer reviews it. */
function heldRun(files: SiteFiles, runId: number) {
  const dir = path.join(files.workDir, 'runs', String(runId));
  let record: { taskId?: unknown; image?: unknown; postedBy?: unknown; outcome?: { state?: unknown } | null };
  try {
    record = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as typeof record;
  } catch {
    throw new CommandFailure(`run ${runId} is not at this site (no workspace in ${files.workDir})`);
  }
  const review = new ReviewFolder(dir);
  const held = review.held();
  if (!held) throw new CommandFailure(`run ${runId} is not waiting for review`);
  return { record, review, held };
}

/** A refusal of the command that is not a usage error: exit 1 with the message. */
export class CommandFailure extends Error {
  override readonly name = 'CommandFailure';
}

export async function reviewCommand(
  argv: readonly string[],
  files: (f: Record<string, string | true>) => SiteFiles,
  io: CommandIo,
): Promise<number> {
  const { flags, positional } = parseCommandArgs(argv, { valued: ['config'], boolean: ['json'], maxPositional: 1 });
  const runId = parseRunId(positional[0]);
  const site = files(flags);
  const { record, review, held } = heldRun(site, runId);
  const who = validPostedBy(record.postedBy);
  const queries = summariseRuns(readAuditEntries(site.auditLog)).find((r) => r.runId === runId)?.sparqlQueries ?? [];
  const log = review.heldLog();
  const progress = review.heldProgress();
  const decision = review.decision();
  const view = {
    runId,
    taskId: record.taskId,
    image: record.image,
    postedBy: who,
    outcome: held.state,
    heldAt: held.heldAt,
    reasons: held.reasons,
    files: held.files,
    moreFiles: held.moreFiles,
    log,
    progress,
    sparqlQueries: queries,
    decision,
  };
  if (flags.json) {
    io.out(JSON.stringify(view, null, 2));
    return 0;
  }
  const bytes = held.files.reduce((n, f) => n + f.size, 0);
  const lines = [`run ${runId} (task ${String(record.taskId)}), held since ${held.heldAt}`];
  const row = (k: string, v: string) => lines.push(`  ${(k + ':').padEnd(12)}${v}`);
  const quote = (text: string) => lines.push(`      | ${text}`);
  row(
    'asked by',
    who
      ? `${who.researcher} (organization ${who.organization ?? 'none'}, project ${who.project ?? 'none'})`
      : 'unknown',
  );
  row('image', String(record.image));
  row('outcome', held.state);
  for (const r of held.reasons) row('why held', r);
  row(
    'files',
    `${held.files.length + held.moreFiles} files, ${bytes} bytes${held.moreFiles ? ` (first ${held.files.length} shown)` : ''}`,
  );
  for (const f of held.files) {
    lines.push(`    ${f.name}  ${f.size} bytes${f.head ? '' : ' (binary)'}`);
    for (const l of f.head ?? []) quote(l);
  }
  const logLines = log.split('\n').filter((l) => l.length > 0);
  row('log', logLines.length ? `${logLines.length} lines held` : 'nothing held');
  for (const l of logLines.slice(0, 40)) quote(l.slice(0, 300));
  if (logLines.length > 40) quote(`… ${logLines.length - 40} more lines`);
  row('progress', progress.length ? `${progress.length} reports held` : 'nothing held');
  for (const p of progress.slice(-10)) quote(JSON.stringify(p).slice(0, 300));
  row('sparql', `${queries.length} ${queries.length === 1 ? 'query' : 'queries'}`);
  for (const q of queries)
    quote(`${String(q.at)} ${String(q.outcome)}: ${q.query.replace(/\s+/g, ' ').trim().slice(0, 300)}`);
  row(
    'decision',
    decision
      ? `${decision.decision} by ${decision.by} at ${decision.at}${decision.reason ? `: ${decision.reason}` : ''}`
      : `none yet: node client approve ${runId} | node client reject ${runId} --reason TEXT`,
  );
  io.out(lines.join('\n'));
  return 0;
}

/** `approve` and `reject`: the decision is written in the run's review folder; the client acts on it. */
export async function decideCommand(
  decision: 'approved' | 'rejected',
  argv: readonly string[],
  files: (f: Record<string, string | true>) => SiteFiles,
  io: CommandIo,
): Promise<number> {
  const { flags, positional } = parseCommandArgs(argv, {
    valued: decision === 'rejected' ? ['config', 'reason'] : ['config'],
    boolean: [],
    maxPositional: 1,
  });
  const runId = parseRunId(positional[0]);
  const reason = typeof flags.reason === 'string' ? flags.reason.trim() : null;
  if (decision === 'rejected' && !reason) throw new UsageError('reject needs --reason TEXT');
  if (reason && reason.length > 1000) throw new UsageError('--reason is longer than 1000 characters');
  const { review } = heldRun(files(flags), runId);
  const earlier = review.decision();
  if (earlier)
    throw new CommandFailure(`run ${runId} was already ${earlier.decision} by ${earlier.by} at ${earlier.at}`);
  const by = process.env.SUDO_USER || os.userInfo().username;
  review.decide({ decision, by, at: new Date().toISOString(), reason });
  io.out(
    decision === 'approved'
      ? `run ${runId} approved by ${by}: the site client sends its results now (or at its next start)`
      : `run ${runId} rejected by ${by}: nothing leaves; the run ends "rejected" (now, or at the client's next start)`,
  );
  return 0;
}
