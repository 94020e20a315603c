import path from 'node:path';
import { loadClientConfig } from '../config.js';

/** Where an officer command writes: stdout for answers, stderr for errors. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/** The site's files an officer command works on. */
export interface SiteFiles {
  auditLog: string;
  workDir: string;
}

/**
 * From `--log FILE` (audit only), else from the site's config (`--config FILE`, PHT_CLIENT_CONFIG
 * or ./config.json), so the officer's commands read exactly what the client writes.
 */
export function siteFilesFrom(flags: Record<string, string | true>, env: NodeJS.ProcessEnv): SiteFiles {
  if (typeof flags.log === 'string') {
    const auditLog = path.resolve(flags.log);
    return { auditLog, workDir: path.dirname(auditLog) };
  }
  const file = typeof flags.config === 'string' ? flags.config : (env.PHT_CLIENT_CONFIG ?? 'config.json');
  const config = loadClientConfig(file, env);
  return { auditLog: config.auditLog, workDir: config.workDir };
}
