import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { coerceError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { ProgressReport } from '../../shared/types.js';
import { RegistryRefusedError } from '../errors.js';
import type { OutputFile } from '../output-files.js';
import type { RunWorkspace } from '../run-workspace.js';
import type { GovernedRegistryApi } from './governed-api.js';
import { checkOutput, previewFiles, type OutputVerdict } from './output-gate.js';
import { ReviewFolder } from './review-folder.js';
import { checkRun, validPostedBy } from './run-gate.js';
import { outputRulesFor, type OutputRules, type SitePolicy } from './site-policy.js';

export interface SiteGovernanceDeps {
  policy: SitePolicy;
  api: GovernedRegistryApi;
  workDir: string;
  /** The site's audit log (created when the client starts). */
  audit: () => Logger;
  logger: Logger;
}

/** How often held runs are checked for the officer's decision. */
const DECISION_CHECK_MS = 1000;

/**
 * The site's governance as the client sees it: one call before anything is pulled (may this run
 * run, and exactly which image), one before anything leaves (the output policy and the officer's
 * review), the rules the governed API applies to logs and progress, and a watch on held runs
 * that resumes them when the officer decides.
 */
export class SiteGovernance {
  private readonly waiting = new Map<number, RunWorkspace>();
  private timer: NodeJS.Timeout | null = null;
  private onDecision: ((ws: RunWorkspace) => void) | null = null;

  /**
   * Whether the policy has any output rule. Without one every run's rules are empty, and lookup
   * (called for every log chunk and progress report the client sends) need not read the run's
   * workspace.
   */
  private readonly anyOutputRules: boolean;

  constructor(private readonly deps: SiteGovernanceDeps) {
    const { output } = deps.policy;
    this.anyOutputRules =
      Object.keys(output.default).length > 0 ||
      Object.values(output.byResearcher).some((r) => Object.keys(r).length > 0) ||
      output.byImage.length > 0;
  }

  /**
   * Decides whether the run may run: the policy's allow and deny rules on who posted it, then the
   * signatures its image's digest needs. On success the run's image becomes `repository@digest`
   * when the digest was verified, so the pull and the container use exactly the verified digest.
   */
  async beforePull(ws: RunWorkspace): Promise<{ allowed: true } | { allowed: false; reason: string }> {
    const { runId, image } = ws.record;
    const who = validPostedBy(ws.record.postedBy);
    const { allow, deny, requiredSignatures } = this.deps.policy.run;
    // Nothing to decide: the allowlist alone governs, as at a site without a policy.
    if (allow.length === 0 && deny.length === 0 && requiredSignatures === 0) return { allowed: true };
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
    if (verdict.image !== image) {
      // The output rules are the requested image's: noted (durably) before the workspace names the
      // verified digest instead. Only then: a note on every run was a synchronous fsync on the
      // client's event loop, and without one the workspace's image is the requested one.
      const review = new ReviewFolder(ws.dir);
      if (!review.notes().requestedImage) review.note({ requestedImage: image });
      await ws.update({ image: verdict.image });
    }
    return { allowed: true };
  }

  /** The output rules of a run from what its workspace says (requested image, who posted it). */
  private rulesFromRecord(image: string, postedBy: unknown, review: ReviewFolder): OutputRules {
    const requested = review.notes().requestedImage ?? image;
    return outputRulesFor(this.deps.policy, requested, validPostedBy(postedBy)?.researcher ?? null);
  }

  /** For the governed API: the rules and review folder of a run in the work folder, or null. */
  lookup(runId: number): { rules: OutputRules; review: ReviewFolder } | null {
    if (!this.anyOutputRules) return null;
    const dir = path.join(this.deps.workDir, 'runs', String(runId));
    let record: { image?: unknown; postedBy?: unknown };
    try {
      record = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as typeof record;
    } catch {
      return null;
    }
    const review = new ReviewFolder(dir);
    const rules = this.rulesFromRecord(typeof record.image === 'string' ? record.image : '', record.postedBy, review);
    return Object.keys(rules).length ? { rules, review } : null;
  }

  /**
   * Before any file leaves: the officer's decision if there is one, else the output policy.
   * 'hold' means the results wait in the workspace (the registry shows awaiting_approval) until
   * `node client approve|reject`; the run is resumed then, also after a client restart.
   */
  async beforeUpload(
    ws: RunWorkspace,
    files: readonly OutputFile[],
    totalBytes: number,
    open: (file: OutputFile) => Promise<Readable>,
  ): Promise<OutputVerdict> {
    const runId = ws.record.runId;
    const review = new ReviewFolder(ws.dir);
    const rules = this.rulesFromRecord(ws.record.image, ws.record.postedBy, review);
    const decision = review.decision();
    if (decision) {
      this.waiting.delete(runId);
      if (!review.decisionRecorded()) {
        this.deps.audit().info(`run ${decision.decision}`, {
          event: decision.decision === 'approved' ? 'run_approved' : 'run_rejected',
          runId,
          by: decision.by,
          decidedAt: decision.at,
          reason: decision.reason,
        });
        review.markDecisionRecorded();
      }
      if (decision.decision === 'rejected')
        return {
          action: 'refuse',
          reason: `rejected by the site's officer ${decision.by}${decision.reason ? `: ${decision.reason}` : ''}`,
        };
      // Approved: what was held goes first, within the policy's log and progress rules.
      const held = review.heldLog();
      if (held) await this.deps.api.sendLog(runId, held, rules, review);
      const progress = review.heldProgress().at(-1);
      if (progress && rules.progress !== 'withhold')
        await this.deps.api.sendProgressNow(runId, progress as ProgressReport).catch(() => undefined);
      return { action: 'send' };
    }
    if (Object.keys(rules).length === 0) return { action: 'send' };
    const verdict = await checkOutput(rules, files, totalBytes, open);
    if (verdict.action === 'refuse') {
      this.deps.audit().info('output refused', { event: 'output_refused', runId, reason: verdict.reason });
      return verdict;
    }
    if (verdict.action === 'hold') {
      if (!review.held()) {
        review.hold({
          heldAt: new Date().toISOString(),
          reasons: verdict.reasons,
          state: ws.record.outcome?.state ?? 'unknown',
          files: await previewFiles(files, open),
          moreFiles: Math.max(0, files.length - 200),
        });
        this.deps.audit().info('output held', {
          event: 'output_held',
          runId,
          reason: verdict.reasons.join('; '),
          files: files.length,
          bytes: totalBytes,
        });
        this.deps.logger.info('results held for the site officer', { runId, reasons: verdict.reasons });
      }
      try {
        await this.deps.api.awaitApproval(runId);
      } catch (e) {
        // Cancelled or ended at the registry meanwhile: the officer's decision will meet a 409 then.
        if (!(e instanceof RegistryRefusedError)) throw e;
        this.deps.logger.warn('registry refused awaiting approval', { runId, error: coerceError(e).message });
      }
      this.waiting.set(runId, ws);
      this.startWatching();
    }
    return verdict;
  }

  /** Calls `resume(ws)` when the officer decides on a held run. */
  watchDecisions(resume: (ws: RunWorkspace) => void): void {
    this.onDecision = resume;
  }

  private startWatching(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const [runId, ws] of [...this.waiting]) {
        if (!new ReviewFolder(ws.dir).decision()) continue;
        this.waiting.delete(runId);
        this.onDecision?.(ws);
      }
    }, DECISION_CHECK_MS);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
