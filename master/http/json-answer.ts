import type { ServerResponse } from 'node:http';
import type { RunAssignment } from '../../shared/types.js';

/**
 * Answers with JSON text already serialised, straight through Node's response: Express's res.json
 * re-parses the Content-Type it sets, looks up the charset and checks freshness on every answer,
 * which in a 1,000-site broadcast was a visible share of the registry's CPU (issue 13, target 1).
 * The headers are the ones res.json sends; those set before (security headers) are kept.
 */
export function sendJsonText(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(json, 'utf8'),
  });
  res.end(json);
}

/**
 * Serialises run assignments exactly as JSON.stringify does (same keys, same order), but a task's
 * config (up to the config limit, and the same for every run of a broadcast) and its poster are
 * serialised once for consecutive runs that share them rather than once per site.
 */
export class AssignmentSerializer {
  private last: { config: unknown; configJson: string; postedBy: unknown; postedByJson: string } | null = null;

  serialize(run: RunAssignment): string {
    let last = this.last;
    if (!last || last.config !== run.config || last.postedBy !== run.postedBy) {
      // Primitive configs compare by value; objects by identity (the store shares one per task).
      last = this.last = {
        config: run.config,
        configJson: JSON.stringify(run.config) ?? 'null',
        postedBy: run.postedBy,
        postedByJson: JSON.stringify(run.postedBy) ?? '',
      };
    }
    const parts: string[] = [];
    for (const key of Object.keys(run) as (keyof RunAssignment)[]) {
      const value = run[key];
      if (value === undefined) continue;
      const json = key === 'config' ? last.configJson : key === 'postedBy' ? last.postedByJson : JSON.stringify(value);
      parts.push(`${JSON.stringify(key)}:${json}`);
    }
    return `{${parts.join(',')}}`;
  }
}
