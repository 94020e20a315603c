import { parseDurationMs } from '../../shared/duration.js';
import { readAuditEntries, verifyAuditChain } from '../audit-log.js';
import { parseCommandArgs, parseRunId, UsageError } from './args.js';
import { formatRun, formatRunTable, runsSince, summariseRuns } from './audit-report.js';
import type { CommandIo, SiteFiles } from './site-files.js';

export const AUDIT_USAGE = `Usage: node client audit [--run ID] [--since TIME] [--json] [--config FILE | --log FILE]
       node client audit verify [--json] [--config FILE | --log FILE]
  TIME is an ISO date (2026-11-30T08:00:00Z) or a duration back from now (24h, 30m).`;

/** `since` as the officer writes it: an ISO date or a duration ago. */
export function parseSince(text: string, now: number): number {
  if (/^[0-9]+(\.[0-9]+)?(ms|s|m|h)$/.test(text)) return now - parseDurationMs(text);
  const t = Date.parse(text);
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text) || Number.isNaN(t))
    throw new UsageError(`--since: "${text.slice(0, 60)}" is neither an ISO date nor a duration such as 24h`);
  return t;
}

export async function auditCommand(
  argv: readonly string[],
  files: (flags: Record<string, string | true>) => SiteFiles,
  io: CommandIo,
): Promise<number> {
  if (argv[0] === 'verify') {
    const { flags } = parseCommandArgs(argv.slice(1), {
      valued: ['config', 'log'],
      boolean: ['json'],
      maxPositional: 0,
    });
    const log = files(flags).auditLog;
    const result = verifyAuditChain(log);
    if (flags.json) io.out(JSON.stringify(result));
    else if (result.ok) io.out(`audit log intact: ${result.lines} lines in ${result.files.length} file(s)`);
    else
      io.out(
        `audit log BROKEN at ${result.file} line ${result.line}: ${result.reason} (${result.lines} lines before it are intact)`,
      );
    return result.ok ? 0 : 1;
  }
  const { flags } = parseCommandArgs(argv, {
    valued: ['config', 'log', 'run', 'since'],
    boolean: ['json'],
    maxPositional: 0,
  });
  const runId = typeof flags.run === 'string' ? parseRunId(flags.run) : null;
  const since = typeof flags.since === 'string' ? parseSince(flags.since, Date.now()) : null;
  let runs = runsSince(summariseRuns(readAuditEntries(files(flags).auditLog)), since);
  if (runId !== null) {
    runs = runs.filter((r) => r.runId === runId);
    if (runs.length === 0) {
      io.err(`error: the audit log has no entry for run ${runId}`);
      return 1;
    }
  }
  if (flags.json) io.out(JSON.stringify(runId !== null ? runs[0] : runs, null, 2));
  else if (runId !== null) io.out(formatRun(runs[0]!));
  else io.out(runs.length ? formatRunTable(runs) : 'no runs in the audit log');
  return 0;
}
