import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import type { Logger } from '../shared/logger.js';

/**
 * The site's own record of what it did for the consortium, as JSON lines: every run received,
 * every image decision and digest, start and end, every SPARQL query, every byte sent back, every
 * approval. It stays at the site; nothing in it is sent to the registry.
 *
 * Tamper evidence: each line carries `seq` (1, 2, 3, … over the whole chain) and `prev`, the
 * SHA-256 of the previous line's exact bytes (the first line ever has 64 zeros). Editing,
 * deleting or reordering a line breaks the link of the line after it. When the file grows past
 * `maxBytes` it is renamed to `<file>.<n>` (n = 1, 2, … oldest first) and the new file's first
 * line chains to the last line of the renamed one, so rotation keeps the chain.
 * Only the client process writes it (one process per site): officer commands such as `approve`
 * leave their decision in the run's workspace and the client records it.
 */

export const GENESIS_HASH = '0'.repeat(64);
/** Default size at which the log is rotated. */
export const DEFAULT_AUDIT_MAX_BYTES = 64 * 1024 * 1024;

export interface AuditLogOptions {
  /** Rotate when the current file would grow past this many bytes. */
  maxBytes?: number;
}

export function hashLine(line: string): string {
  return crypto.createHash('sha256').update(line, 'utf8').digest('hex');
}

/** The log's files in chain order: rotated ones oldest first, then the current one (if present). */
export function auditFiles(file: string): string[] {
  const dir = path.dirname(file);
  const base = path.basename(file);
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const rotated = entries
    .map((e) => (e.startsWith(`${base}.`) ? /^[0-9]+$/.exec(e.slice(base.length + 1))?.[0] : undefined))
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b)
    .map((n) => `${file}.${n}`);
  return fs.existsSync(file) ? [...rotated, file] : rotated;
}

/** The last complete line of a file, or null when it has none. Reads only the tail. */
function lastLine(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const size = fs.fstatSync(fd).size;
    let chunk = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      const text = buf.toString('utf8').replace(/\n+$/, '');
      const nl = text.lastIndexOf('\n');
      if (nl >= 0 || start === 0) return text.length === 0 ? null : text.slice(nl + 1);
      chunk *= 4;
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface ChainHead {
  seq: number;
  hash: string;
}

/** Appends hash-chained lines synchronously, so the order in the file is the order of the calls. */
export class AuditChainWriter {
  private head: ChainHead;
  private size: number;
  private readonly maxBytes: number;

  constructor(
    readonly file: string,
    options: AuditLogOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? DEFAULT_AUDIT_MAX_BYTES;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.head = this.findHead();
    this.size = fs.existsSync(file) ? fs.statSync(file).size : 0;
  }

  private findHead(): ChainHead {
    const files = auditFiles(this.file);
    for (let i = files.length - 1; i >= 0; i--) {
      const line = lastLine(files[i]!);
      if (line === null) continue;
      const seq = chainedSeq(line);
      if (seq === null) {
        // A log written before the chain existed: keep it beside, start the chain afresh.
        const aside = `${files[i]!}.pre-chain-${Date.now()}`;
        fs.renameSync(files[i]!, aside);
        return { seq: 0, hash: GENESIS_HASH };
      }
      return { seq, hash: hashLine(line) };
    }
    return { seq: 0, hash: GENESIS_HASH };
  }

  /** Writes one entry; returns the line written. */
  append(entry: Record<string, unknown>): string {
    const { seq: _s, prev: _p, ...rest } = entry;
    const line = JSON.stringify({ seq: this.head.seq + 1, prev: this.head.hash, ...rest });
    const bytes = Buffer.byteLength(line) + 1;
    if (this.size > 0 && this.size + bytes > this.maxBytes) this.rotate();
    fs.appendFileSync(this.file, line + '\n', { mode: 0o600 });
    this.size += bytes;
    this.head = { seq: this.head.seq + 1, hash: hashLine(line) };
    return line;
  }

  private rotate(): void {
    const rotated = auditFiles(this.file).filter((f) => f !== this.file);
    const last = rotated.length ? Number(rotated[rotated.length - 1]!.slice(this.file.length + 1)) : 0;
    fs.renameSync(this.file, `${this.file}.${last + 1}`);
    this.size = 0;
  }
}

function chainedSeq(line: string): number | null {
  try {
    const parsed = JSON.parse(line) as { seq?: unknown; prev?: unknown };
    return Number.isSafeInteger(parsed.seq) && typeof parsed.prev === 'string' ? (parsed.seq as number) : null;
  } catch {
    return null;
  }
}

// winston's typings expose its Transport base class only as a namespace; at run time it is the class.
const TransportBase = (winston as unknown as { Transport: typeof import('winston-transport') }).Transport;

/** A winston transport that hands each entry to the chain writer. */
class AuditChainTransport extends TransportBase {
  constructor(private readonly writer: AuditChainWriter) {
    super();
  }

  override log(info: Record<string | symbol, unknown>, callback: () => void): void {
    const entry: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(info)) entry[k] = v;
    this.writer.append(entry);
    callback();
  }
}

/**
 * The audit log as a logger: `audit.info('sparql query', { event: 'sparql_query', runId, … })`.
 * Every call becomes one chained line with a timestamp, the level, the message and the fields.
 */
export function createAuditLog(file: string, site: string, options: AuditLogOptions = {}): Logger {
  const writer = new AuditChainWriter(file, options);
  return winston.createLogger({
    level: 'info',
    defaultMeta: { site },
    format: winston.format.timestamp(),
    transports: [new AuditChainTransport(writer)],
  });
}

export type AuditVerification =
  | { ok: true; files: string[]; lines: number }
  | { ok: false; files: string[]; lines: number; file: string; line: number; reason: string };

/**
 * Walks the whole chain (rotated files, then the current one) and names the first line whose
 * link does not hold. A removed line, an edited line and swapped lines all break the link of the
 * line after them (or their own `seq`).
 */
export function verifyAuditChain(file: string): AuditVerification {
  const files = auditFiles(file);
  let prevHash = GENESIS_HASH;
  let prevSeq = 0;
  let count = 0;
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    else if (lines.length > 0)
      return { ok: false, files, lines: count, file: f, line: lines.length, reason: 'the last line is incomplete' };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const bad = (reason: string): AuditVerification => ({
        ok: false,
        files,
        lines: count,
        file: f,
        line: i + 1,
        reason,
      });
      let parsed: { seq?: unknown; prev?: unknown };
      try {
        parsed = JSON.parse(line) as typeof parsed;
      } catch {
        return bad('not a JSON line');
      }
      if (typeof parsed !== 'object' || parsed === null) return bad('not a JSON object');
      if (parsed.prev !== prevHash)
        return bad(
          prevSeq === 0 && count === 0
            ? 'the first line does not start the chain (earlier lines or files are missing)'
            : `its prev hash does not match line seq ${prevSeq} (a line before it was changed, removed or moved)`,
        );
      if (parsed.seq !== prevSeq + 1) return bad(`seq ${String(parsed.seq)} where ${prevSeq + 1} was expected`);
      prevHash = hashLine(line);
      prevSeq = parsed.seq as number;
      count++;
    }
  }
  return { ok: true, files, lines: count };
}

/** Every entry of the log in chain order, parsed (lines that are not JSON objects are skipped). */
export function readAuditEntries(file: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const f of auditFiles(file)) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        const v = JSON.parse(line) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) out.push(v as Record<string, unknown>);
      } catch {
        // verify reports it; a report of runs reads what it can.
      }
    }
  }
  return out;
}
