/**
 * End-to-end encryption at the site. A run whose config is sealed (shared/crypto/sealed-task.ts)
 * is opened with the site's private key and checked against the researcher's pinned key before
 * anything runs; the container then sees the plain config as usual. Every result file, log piece
 * and progress message of that run is sealed for the recipients the researcher signed, before it
 * leaves the site. The recipients are written to disk before the run's workspace exists, so a
 * client restarted mid-run keeps sealing (fail closed: a sealed run never uploads plaintext).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  CryptoError,
  FingerprintPins,
  KeyDirectory,
  isSealedConfig,
  openTaskConfig,
  parsePublicKey,
  publicKeyToJson,
  readKeyRingFile,
  sealStream,
  sealText,
  type KeyRing,
  type PublicKey,
} from '../shared/crypto/index.js';
import type { KeyKind } from '../shared/key-schemas.js';
import type { ProgressReport, RunAssignment, SiteRunView } from '../shared/types.js';
import type { ClientConfig } from './config.js';
import { RegistryRefusedError } from './errors.js';
import { SiteRegistryApi } from './registry-api.js';
import { readInbox } from './ttp.js';

const PROGRESS_MESSAGE_LIMIT = 1000;
const LOG_PIECE_CHARS = 45_000;

/** What a run is sealed for, as kept on disk beside the runs. */
interface SealingRecord {
  recipients: unknown[];
  ttp: { name: string; url: string; key: unknown } | null;
}

/** The TTP a run's outbox goes to: its name, file service and pinned key. */
export interface RunTtp {
  name: string;
  url: string;
  key: PublicKey;
}

export class RunSealing {
  private readonly dir: string;
  private readonly cache = new Map<number, PublicKey[] | null>();
  private directory: KeyDirectory | null = null;

  constructor(
    private readonly config: ClientConfig,
    private readonly api: SiteRegistryApi,
    private readonly site: () => string,
  ) {
    this.dir = path.join(config.workDir, 'sealed');
  }

  private keys(): KeyDirectory {
    this.directory ??= new KeyDirectory(
      (kind: KeyKind, name: string) => this.api.publicKey(kind, name),
      new FingerprintPins(this.config.keys.pinsFile, this.config.keys.pinned),
    );
    return this.directory;
  }

  /**
   * Opens a sealed run's config. Returns the run with its plain config, or a reason to fail the run
   * (no key, not sealed for this site, a signature or key that does not check out).
   */
  async prepare(run: RunAssignment): Promise<{ run: RunAssignment; failure: string | null }> {
    if (!isSealedConfig(run.config)) {
      // A record left by an earlier run of the same id (a reset registry) must not seal this one.
      this.forget(run.id);
      return { run, failure: null };
    }
    const fail = (reason: string) => ({ run: { ...run, config: null }, failure: reason });
    let ring: KeyRing;
    try {
      ring = readKeyRingFile(this.config.keys.keyFile);
    } catch (e) {
      return fail(
        `site ${this.site()} cannot open the sealed config: ${(e as Error).message} (create a key pair with: node client keys create)`,
      );
    }
    try {
      const opened = openTaskConfig(ring, run.config);
      const owner = await this.keys().get('user', opened.sealing.owner);
      opened.verify(owner.key);
      const recipients: PublicKey[] = [];
      for (const ref of opened.sealing.resultRecipients) {
        const [kind, name] = ref.split(/:(.*)/s) as [KeyKind, string];
        recipients.push((await this.keys().get(kind, name)).key);
      }
      if (recipients.length === 0) return fail('the sealed config names no result recipient');
      let ttp: SealingRecord['ttp'] = null;
      if (opened.sealing.ttp !== null) {
        const { key, record } = await this.keys().get('ttp', opened.sealing.ttp);
        if (!record.url) return fail(`TTP "${opened.sealing.ttp}" has no file service URL at the registry`);
        ttp = { name: opened.sealing.ttp, url: record.url.replace(/\/+$/, ''), key: publicKeyToJson(key) };
      }
      let config = opened.sealing.config;
      const inboxTask = inboxTaskOf(config);
      if (inboxTask !== null) {
        try {
          config = {
            ...(config as object),
            ttpInbox: { taskId: inboxTask, files: await readInbox(this.config, inboxTask) },
          };
        } catch (e) {
          return fail(`site ${this.site()} cannot read the TTP inbox of task ${inboxTask}: ${(e as Error).message}`);
        }
      }
      const record: SealingRecord = { recipients: recipients.map(publicKeyToJson), ttp };
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(path.join(this.dir, `${run.id}.json`), JSON.stringify(record), { mode: 0o600 });
      this.cache.set(run.id, recipients);
      return { run: { ...run, config: config as RunAssignment['config'] }, failure: null };
    } catch (e) {
      if (e instanceof CryptoError) return fail(`site ${this.site()} cannot open the sealed config: ${e.message}`);
      if (e instanceof RegistryRefusedError)
        return fail(`site ${this.site()} cannot get a key the sealed config needs: ${e.message}`);
      throw e;
    }
  }

  /** The keys a run's output is sealed for; null for a run that is not sealed. */
  recipientsFor(runId: number): PublicKey[] | null {
    if (!this.cache.has(runId)) {
      const record = this.record(runId);
      this.cache.set(runId, record ? record.recipients.map(parsePublicKey) : null);
    }
    return this.cache.get(runId)!;
  }

  /** The TTP a sealed run's outbox goes to, if its (signed) config names one. */
  ttpFor(runId: number): RunTtp | null {
    const ttp = this.record(runId)?.ttp;
    return ttp ? { name: ttp.name, url: ttp.url, key: parsePublicKey(ttp.key) } : null;
  }

  private record(runId: number): SealingRecord | null {
    const file = path.join(this.dir, `${runId}.json`);
    return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as SealingRecord) : null;
  }

  /** Forgets a run's sealing (kept until then even after the run is reported: a re-delivery after a crash must seal too). */
  forget(runId: number): void {
    this.cache.delete(runId);
    fs.rmSync(path.join(this.dir, `${runId}.json`), { force: true });
  }
}

/** `{"ttpInbox": {"taskId": N}}` in a sealed config asks the TTP's client for task N's inbox. */
function inboxTaskOf(config: unknown): number | null {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return null;
  const inbox = (config as Record<string, unknown>).ttpInbox as Record<string, unknown> | undefined;
  return inbox && Number.isInteger(inbox.taskId) && (inbox.taskId as number) > 0 ? (inbox.taskId as number) : null;
}

/** The site's API with sealing applied to what a sealed run sends. */
export class SealingSiteApi extends SiteRegistryApi {
  sealing: RunSealing | null = null;

  private recipients(runId: number): PublicKey[] | null {
    return this.sealing?.recipientsFor(runId) ?? null;
  }

  override async progress(runId: number, progress: ProgressReport, signal?: AbortSignal): Promise<SiteRunView> {
    const to = this.recipients(runId);
    if (!to || typeof progress.message !== 'string') return super.progress(runId, progress, signal);
    const sealed = sealText(to, progress.message).trimEnd();
    // Numbers travel in the clear (the registry routes on them); a message too long once sealed is dropped.
    const { message: _m, ...rest } = progress;
    return super.progress(runId, sealed.length <= PROGRESS_MESSAGE_LIMIT ? { ...rest, message: sealed } : rest, signal);
  }

  override async log(runId: number, text: string, signal?: AbortSignal): Promise<SiteRunView> {
    const to = this.recipients(runId);
    if (!to) return super.log(runId, text, signal);
    // Sealing grows text by a third plus a header: cut it so each sealed append stays under the
    // registry's limit (45,000 characters are at most 180 KiB of UTF-8, 240 KiB once sealed).
    let view: SiteRunView | null = null;
    for (let i = 0; i < text.length || view === null;) {
      let end = Math.min(text.length, i + LOG_PIECE_CHARS);
      // Never cut between the two halves of a surrogate pair.
      if (end < text.length && /[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--;
      view = await super.log(runId, sealText(to, text.slice(i, end)), signal);
      if (end === i) break;
      i = end;
    }
    return view;
  }

  override async uploadFile(
    runId: number,
    name: string,
    body: Readable,
    size: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const to = this.recipients(runId);
    if (!to) return super.uploadFile(runId, name, body, size, signal);
    const sealer = sealStream(to);
    body.on('error', (e) => sealer.destroy(e));
    return super.uploadFile(runId, name, body.pipe(sealer), sealer.sealedLength(size), signal);
  }
}
