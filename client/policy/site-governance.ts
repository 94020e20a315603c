import type { Logger } from '../../shared/logger.js';
import type { SiteRegistryApi } from '../registry-api.js';
import type { RunWorkspace } from '../run-workspace.js';
import { checkRun, validPostedBy } from './run-gate.js';
import type { SitePolicy } from './site-policy.js';

export interface SiteGovernanceDeps {
  policy: SitePolicy;
  api: SiteRegistryApi;
  /** The site's audit log (created when the client starts). */
  audit: () => Logger;
  logger: Logger;
}

/**
 * The site's governance as the run executor sees it: one call before anything is pulled (may this
 * run run, and exactly which image) and one before anything leaves (see output-gate.ts).
 */
export class SiteGovernance {
  constructor(private readonly deps: SiteGovernanceDeps) {}

  /**
   * Decides whether the run may run: the policy's allow and deny rules on who posted it, then the
   * signatures its image's digest needs. On success the run's image becomes `repository@digest`
   * when the digest was verified, so the pull and the container use exactly the verified digest.
   */
  async beforePull(ws: RunWorkspace): Promise<{ allowed: true } | { allowed: false; reason: string }> {
    const { runId, image } = ws.record;
    const who = validPostedBy(ws.record.postedBy);
    const verdict = await checkRun(this.deps.policy, image, who, (digest) => this.deps.api.listImageSignatures(digest));
    this.deps.audit().info('run policy', {
      event: 'run_policy',
      runId,
      image,
      postedBy: who,
      allowed: verdict.allowed,
      reason: verdict.allowed ? null : verdict.reason,
      digest: verdict.digest,
      signatures: verdict.signatures,
    });
    if (!verdict.allowed) {
      this.deps.logger.info('run refused by site policy', { runId, reason: verdict.reason });
      return { allowed: false, reason: verdict.reason };
    }
    if (verdict.image !== image) ws.update({ image: verdict.image });
    return { allowed: true };
  }
}
