/**
 * A trusted third party (TTP) in a run. At a data site: files the algorithm leaves in its TTP
 * outbox (`$PHT_TTP_OUTBOX`, a folder inside the output folder) are sealed for the TTP's pinned
 * key and uploaded to the TTP's file service with the site's sender key, never to the registry;
 * the algorithm never sees a credential. At the TTP: a sealed run whose config asks for
 * `{"ttpInbox": {"taskId": N}}` gets the files of task N from the file service, opened with the
 * TTP's key, in its config (`ttpInbox.files`).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { CONTAINER_PATHS } from '../shared/container-contract.js';
import { open, readKeyRingFile, sealStream } from '../shared/crypto/index.js';
import { coerceError } from '../shared/errors.js';
import { validateFileEntryList } from '../shared/fileservice-schemas.js';
import type { Logger } from '../shared/logger.js';
import type { ClientConfig } from './config.js';
import { openForUpload, scanOutput } from './output-files.js';
import type { RunWorkspace } from './run-workspace.js';
import type { RunSealing } from './sealing.js';

/** The outbox's folder name inside the output folder (see CONTAINER_PATHS.ttpOutbox). */
export const OUTBOX_FOLDER = path.posix.basename(CONTAINER_PATHS.ttpOutbox);
const MAX_INBOX_FILES = 10_000;
const MAX_INBOX_BYTES = 256 * 1024 * 1024;

export class TtpOutbox {
  constructor(
    private readonly config: ClientConfig,
    private readonly sealing: RunSealing,
    private readonly audit: Logger,
  ) {}

  /**
   * Sends the run's outbox to its TTP and removes it from the output folder (so it never reaches
   * the registry). Returns a reason to fail the run, or null.
   */
  async deliver(ws: RunWorkspace, log: Logger, signal: AbortSignal): Promise<string | null> {
    const dir = path.join(ws.outputDir, OUTBOX_FOLDER);
    if (!fs.existsSync(dir)) return null;
    try {
      const ttp = this.sealing.ttpFor(ws.record.runId);
      if (!ttp) return 'the run wrote files for a TTP, but its task names none (or is not sealed): nothing was sent';
      const apiKey = this.config.keys.ttpApiKeys[ttp.name];
      if (!apiKey) return `this site has no file service key for TTP "${ttp.name}" (keys.ttpApiKeys): nothing was sent`;
      const scan = await scanOutput(dir, { maxFiles: this.config.limits.outputFiles });
      if (scan.overflow)
        return `the TTP outbox holds more than ${this.config.limits.outputFiles} files: nothing was sent`;
      for (const file of scan.files) {
        if (file.name.includes('/')) return `TTP outbox files must sit directly in the outbox: ${file.name}`;
        const body: Readable = await openForUpload(dir, file);
        const sealer = sealStream([ttp.key]);
        body.on('error', (e) => sealer.destroy(e));
        const url = `${ttp.url}/api/v1/tasks/${ws.record.taskId}/files/${encodeURIComponent(file.name)}`;
        const res = await request(url, {
          method: 'PUT',
          signal,
          headers: {
            authorization: `Bearer ${apiKey}`,
            'content-type': 'application/octet-stream',
            'content-length': String(sealer.sealedLength(file.size)),
          },
          body: body.pipe(sealer),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200 && res.statusCode !== 201)
          return `the TTP's file service refused ${file.name}: HTTP ${res.statusCode} ${text.slice(0, 200)}`;
        this.audit.info('file sent to TTP', {
          event: 'ttp_file_sent',
          runId: ws.record.runId,
          ttp: ttp.name,
          file: file.name,
          bytes: file.size,
        });
      }
      log.info('outbox sent to the TTP', { ttp: ttp.name, files: scan.files.length });
      return null;
    } catch (e) {
      return `sending the TTP outbox failed: ${coerceError(e).message}`;
    } finally {
      // Sent or not, these files never go to the registry.
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

export interface InboxFile {
  sender: string;
  name: string;
  /** The opened file as UTF-8 text. */
  data: string;
}

/** At the TTP: every file of `taskId` in the file service's inbox, opened with the TTP's key. */
export async function readInbox(config: ClientConfig, taskId: number): Promise<InboxFile[]> {
  const inbox = config.keys.ttpInbox;
  if (!inbox) throw new Error('this client has no TTP inbox configured (keys.ttpInbox)');
  const ring = readKeyRingFile(config.keys.keyFile);
  const base = inbox.url.replace(/\/+$/, '');
  const headers = { authorization: `Bearer ${inbox.token}` };
  const list = await request(`${base}/api/v1/tasks/${taskId}/files`, { headers });
  if (list.statusCode !== 200) {
    await list.body.dump();
    throw new Error(`the file service answered ${list.statusCode}`);
  }
  const entries: unknown = await list.body.json();
  if (!validateFileEntryList(entries))
    throw new Error(`the file service's file list is malformed: ${validateFileEntryList.problems().join('; ')}`);
  if (entries.length > MAX_INBOX_FILES) throw new Error(`more than ${MAX_INBOX_FILES} files in the inbox`);
  let total = 0;
  const files: InboxFile[] = [];
  for (const e of entries) {
    total += e.size;
    if (total > MAX_INBOX_BYTES) throw new Error(`the inbox holds more than ${MAX_INBOX_BYTES} bytes`);
    const res = await request(
      `${base}/api/v1/tasks/${taskId}/files/${encodeURIComponent(e.sender)}/${encodeURIComponent(e.name)}`,
      { headers },
    );
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200)
      throw new Error(`the file service answered ${res.statusCode} for ${e.sender}/${e.name}`);
    files.push({ sender: e.sender, name: e.name, data: open(ring, bytes).toString('utf8') });
  }
  return files;
}
