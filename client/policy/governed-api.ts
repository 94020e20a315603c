import type { ProgressReport, SiteRunView } from '../../shared/types.js';
import { LOG_CHUNK_BYTES } from '../log-forwarder.js';
import { SealingSiteApi } from '../sealing.js';
import type { ReviewFolder } from './review-folder.js';
import type { OutputRules } from './site-policy.js';

/** The output rules of a run and its review folder; null for a run the client does not know. */
export type RunOutputLookup = (runId: number) => { rules: OutputRules; review: ReviewFolder } | null;

/**
 * The site's registry API with the output policy applied to logs and progress, which are outputs
 * too: under manual review they are held in the run's review folder (the registry sees only the
 * state) and sent after approval; `logs: withhold` and `progress: withhold` keep them at the site
 * for good; `logBytes` caps what is sent.
 */
/** Extends the sealing API: the site's policy sees plaintext, and what it lets go is sealed after it. */
export class GovernedRegistryApi extends SealingSiteApi {
  constructor(
    registryUrl: string,
    apiKey: string,
    private readonly lookup: RunOutputLookup,
  ) {
    super(registryUrl, apiKey);
  }

  /** What the registry would answer; the run goes on at the site, only the text stays here. */
  private kept(runId: number): SiteRunView {
    return { id: runId, taskId: 1, status: 'running', cancelRequested: false };
  }

  override async log(runId: number, text: string, signal?: AbortSignal): Promise<SiteRunView> {
    const run = this.lookup(runId);
    if (!run) return super.log(runId, text, signal);
    if (run.rules.review === 'manual' && !run.review.decision()) {
      run.review.appendLog(text);
      return this.kept(runId);
    }
    return this.sendLog(runId, text, run.rules, run.review, signal);
  }

  /** Sends log text within the policy (withheld, or cut at logBytes); used for held logs too. */
  async sendLog(
    runId: number,
    text: string,
    rules: OutputRules,
    review: ReviewFolder,
    signal?: AbortSignal,
  ): Promise<SiteRunView> {
    if (rules.logs === 'withhold') return this.kept(runId);
    let bytes = Buffer.from(text, 'utf8');
    if (rules.logBytes !== undefined) {
      const sent = review.logBytesSent();
      const room = Math.max(0, rules.logBytes - sent);
      if (room === 0) return this.kept(runId);
      if (bytes.length > room) {
        const note = Buffer.from(`\n[log cut here by the site's output policy at ${rules.logBytes} bytes]\n`);
        bytes = Buffer.concat([bytes.subarray(0, Math.max(0, room - note.length)), note]).subarray(0, room);
      }
      review.setLogBytesSent(sent + bytes.length);
    }
    let view = this.kept(runId);
    // A cut may split a UTF-8 character; the registry takes text, so decode leniently.
    for (let i = 0; i < bytes.length; i += LOG_CHUNK_BYTES)
      view = await super.log(runId, bytes.subarray(i, i + LOG_CHUNK_BYTES).toString('utf8'), signal);
    return view;
  }

  override async progress(runId: number, report: ProgressReport, signal?: AbortSignal): Promise<SiteRunView> {
    const run = this.lookup(runId);
    if (!run) return super.progress(runId, report, signal);
    if (run.rules.progress === 'withhold') return this.kept(runId);
    if (run.rules.review === 'manual' && !run.review.decision()) {
      run.review.appendProgress(report);
      return this.kept(runId);
    }
    return super.progress(runId, report, signal);
  }

  /** The real log append, for held text already within the policy. */
  async sendProgressNow(runId: number, report: ProgressReport): Promise<void> {
    await super.progress(runId, report);
  }
}
