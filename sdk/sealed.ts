/**
 * End-to-end encryption for researchers: the researcher's key pair, sealed tasks, and opening
 * what sealed runs send back. The registry relays keys; every key used here is checked against
 * a pinned fingerprint (pins file, or fingerprints given by the operator), so a registry that
 * swaps a key is refused with an error naming the principal.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  FingerprintPins,
  KeyDirectory,
  createKeyFiles,
  looksSealed,
  openSealedText,
  openStream,
  publicKeyToJson,
  readKeyRingFile,
  rotateKeyFiles,
  sealTaskConfig,
  type KeyRing,
  type PrivateKey,
  type PublicKey,
} from '../shared/crypto/index.js';
import type { KeyKind } from '../shared/key-schemas.js';
import type { CreateTaskRequest, Task } from '../shared/types.js';
import type { CallOptions, PhtClient, SavedFile } from './client.js';
import { PhtApiError, PhtError } from './errors.js';

/** A sealed task cannot be posted (a target without a usable key), or a sealed result cannot be opened. */
export class PhtSealingError extends PhtError {
  override readonly name = 'PhtSealingError';
}

export interface ResearcherKeysOptions {
  /** The researcher's private key (mode 0600). Default: $PHT_KEY_FILE or ~/.pht/researcher.key. */
  keyFile?: string;
  /** Fingerprints learned on first use. Default: $PHT_PINS_FILE or ~/.pht/pins.json. */
  pinsFile?: string;
  /** Fingerprints pinned by hand, e.g. {"site:hospital-a": "SHA256:…"} ($PHT_PINNED_KEYS as JSON). */
  pinned?: Record<string, string>;
}

export interface SealedTaskRequest extends CreateTaskRequest {
  /** More principals the results are sealed for, besides the researcher: "user:bob". */
  resultRecipients?: string[];
  /** A TTP (registered with `node master add-ttp`) that receives the sites' outbox files. */
  ttp?: string;
}

export class ResearcherKeys {
  readonly keyFile: string;
  private readonly directory: (client: PhtClient) => KeyDirectory;

  constructor(options: ResearcherKeysOptions = {}) {
    const home = path.join(os.homedir(), '.pht');
    this.keyFile = path.resolve(options.keyFile ?? path.join(home, 'researcher.key'));
    const pins = new FingerprintPins(
      path.resolve(options.pinsFile ?? path.join(home, 'pins.json')),
      options.pinned ?? {},
    );
    this.directory = (client) =>
      new KeyDirectory(async (kind: KeyKind, name: string) => {
        try {
          return await client.publicKey(kind, name);
        } catch (e) {
          if (e instanceof PhtApiError && e.status === 404)
            throw new PhtSealingError(
              `${kind} "${name}" has no registered public key, so nothing can be sealed for it`,
            );
          if (e instanceof PhtApiError && e.status === 410) throw new PhtSealingError(e.message);
          throw e;
        }
      }, pins);
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): ResearcherKeys {
    let pinned: Record<string, string> = {};
    if (env.PHT_PINNED_KEYS) {
      try {
        pinned = JSON.parse(env.PHT_PINNED_KEYS) as Record<string, string>;
      } catch {
        throw new TypeError('PHT_PINNED_KEYS must be a JSON object of fingerprints');
      }
    }
    return new ResearcherKeys({ keyFile: env.PHT_KEY_FILE, pinsFile: env.PHT_PINS_FILE, pinned });
  }

  /** Creates the key pair (or keeps an existing one) and registers its public key. */
  async create(client: PhtClient, options: CallOptions = {}): Promise<PrivateKey> {
    const key = fs.existsSync(this.keyFile) ? readKeyRingFile(this.keyFile).current : createKeyFiles(this.keyFile);
    await client.registerPublicKey({ publicKey: publicKeyToJson(key.publicKey) }, options);
    return key;
  }

  /** A new key pair registered with a rotation signed by the old one; the old one opens results for `graceMs`. */
  async rotate(client: PhtClient, graceMs: number, options: CallOptions = {}): Promise<KeyRing> {
    const { ring, statement } = rotateKeyFiles(this.keyFile, graceMs);
    await client.registerPublicKey({ publicKey: statement.new, rotation: statement }, options);
    return ring;
  }

  ring(): KeyRing {
    return readKeyRingFile(this.keyFile);
  }

  /** A principal's key from the registry, checked against the pins. */
  async publicKey(client: PhtClient, kind: KeyKind, name: string): Promise<PublicKey> {
    return (await this.directory(client).get(kind, name)).key;
  }

  /**
   * Posts a task whose config only the target sites can read, signed by this researcher, asking
   * for results sealed to the researcher (and `resultRecipients`). A target site without a
   * registered key is refused before anything is posted, naming the site.
   */
  async createSealedTask(client: PhtClient, request: SealedTaskRequest, options: CallOptions = {}): Promise<Task> {
    const ring = this.ring();
    const me = await client.me(options);
    const sites = request.sites ?? (await client.listSites(options)).filter((s) => s.enabled).map((s) => s.name);
    if (sites.length === 0) throw new PhtSealingError('no target site to seal the task for');
    const siteKeys: PublicKey[] = [];
    for (const site of sites) siteKeys.push(await this.publicKey(client, 'site', site));
    // The sites seal results to the researcher's key as the registry relays it: check that it is ours.
    const registered = await this.publicKey(client, 'user', me.name);
    if (registered.fingerprint !== ring.current.publicKey.fingerprint)
      throw new PhtSealingError(
        `the registry holds another key for you (${registered.fingerprint}) than ${this.keyFile} (${ring.current.publicKey.fingerprint}); run: pht keys create`,
      );
    const extra = request.resultRecipients ?? [];
    for (const ref of extra) {
      const [kind, name] = ref.split(/:(.*)/s) as [KeyKind, string];
      if (kind !== 'user' || !name) throw new PhtSealingError(`result recipient "${ref}" must be user:NAME`);
      await this.publicKey(client, kind, name);
    }
    if (request.ttp !== undefined) await this.publicKey(client, 'ttp', request.ttp);
    const config = sealTaskConfig(
      ring.current,
      {
        owner: me.name,
        config: request.config ?? null,
        resultRecipients: [`user:${me.name}`, ...extra.filter((r) => r !== `user:${me.name}`)],
        ttp: request.ttp ?? null,
      },
      siteKeys,
    );
    return client.createTask({ image: request.image, config, sites, name: request.name }, options);
  }

  /** A run's log with its sealed lines opened. */
  openLog(text: string): string {
    return openSealedText(this.ring(), text);
  }

  /**
   * Opens, in place, every saved result file that is sealed (written beside it, then renamed over
   * it only when it opened completely). Returns the files with their opened sizes.
   */
  async openFiles(files: SavedFile[]): Promise<SavedFile[]> {
    let ring: KeyRing | null = null;
    const out: SavedFile[] = [];
    for (const file of files) {
      const head = Buffer.alloc(4);
      const fd = fs.openSync(file.path, 'r');
      const n = fs.readSync(fd, head, 0, 4, 0);
      fs.closeSync(fd);
      if (n < 4 || !looksSealed(head)) {
        out.push(file);
        continue;
      }
      const tmp = `${file.path}.${crypto.randomBytes(4).toString('hex')}.opening`;
      const hash = crypto.createHash('sha256');
      try {
        await pipeline(
          fs.createReadStream(file.path),
          openStream((ring ??= this.ring())),
          async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              hash.update(chunk);
              yield chunk;
            }
          },
          fs.createWriteStream(tmp, { mode: 0o600 }),
        );
      } catch (e) {
        fs.rmSync(tmp, { force: true });
        throw new PhtSealingError(`result file ${file.name} could not be opened: ${(e as Error).message}`);
      }
      fs.renameSync(tmp, file.path);
      out.push({ ...file, size: fs.statSync(file.path).size, sha256: hash.digest('hex') });
    }
    return out;
  }
}
