/**
 * The file service's records (principals and files) in SQLite. Route handlers call these domain
 * operations and never touch the database.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type PrincipalKind = 'sender' | 'reader';

export interface Principal {
  id: number;
  kind: PrincipalKind;
  name: string;
  enabled: boolean;
  createdAt: string;
}

export interface StoredFile {
  taskId: string;
  sender: string;
  name: string;
  size: number;
  sha256: string;
  storedAs: string;
  createdAt: string;
}

/** Numbered and append-only, like the registry's: a landed entry is never edited. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE principals (
     id INTEGER PRIMARY KEY,
     kind TEXT NOT NULL CHECK (kind IN ('sender', 'reader')),
     name TEXT NOT NULL,
     secret_hash TEXT NOT NULL UNIQUE,
     enabled INTEGER NOT NULL DEFAULT 1,
     created_at TEXT NOT NULL,
     UNIQUE (kind, name)
   );
   CREATE TABLE files (
     task_id TEXT NOT NULL,
     sender TEXT NOT NULL,
     name TEXT NOT NULL,
     size INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     stored_as TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL,
     created_ms INTEGER NOT NULL,
     PRIMARY KEY (task_id, sender, name)
   );
   CREATE INDEX files_by_age ON files (created_ms);`,
];

/** 256 random bits, prefixed so a leaked key is recognisable in logs and secret scanners. */
function generateSecret(kind: PrincipalKind): string {
  return `pht_fs${kind}_${crypto.randomBytes(32).toString('base64url')}`;
}

/** Secrets are high-entropy, so a fast hash is enough to make a stolen database useless. */
function hashSecret(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}

interface FileRow {
  task_id: string;
  sender: string;
  name: string;
  size: number;
  sha256: string;
  stored_as: string;
  created_at: string;
}

const toFile = (r: FileRow): StoredFile => ({
  taskId: r.task_id,
  sender: r.sender,
  name: r.name,
  size: r.size,
  sha256: r.sha256,
  storedAs: r.stored_as,
  createdAt: r.created_at,
});

export class FileServiceStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(dataDir: string) {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.db = new Database(path.join(dataDir, 'fileservice.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    const db = this.db;
    this.stmts = {
      insertPrincipal: db.prepare(
        'INSERT INTO principals (kind, name, secret_hash, enabled, created_at) VALUES (?, ?, ?, 1, ?)',
      ),
      byHash: db.prepare('SELECT id, kind, name, enabled, created_at FROM principals WHERE secret_hash = ?'),
      list: db.prepare('SELECT id, kind, name, enabled, created_at FROM principals ORDER BY kind, name'),
      setEnabled: db.prepare('UPDATE principals SET enabled = ? WHERE kind = ? AND name = ?'),
      setSecret: db.prepare('UPDATE principals SET secret_hash = ? WHERE kind = ? AND name = ?'),
      countFiles: db.prepare('SELECT count(*) AS n FROM files WHERE task_id = ? AND sender = ?'),
      getFile: db.prepare('SELECT * FROM files WHERE task_id = ? AND sender = ? AND name = ?'),
      upsertFile: db.prepare(
        `INSERT INTO files (task_id, sender, name, size, sha256, stored_as, created_at, created_ms)
         VALUES (@taskId, @sender, @name, @size, @sha256, @storedAs, @createdAt, @createdMs)
         ON CONFLICT (task_id, sender, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256,
           stored_as = excluded.stored_as, created_at = excluded.created_at, created_ms = excluded.created_ms`,
      ),
      listFiles: db.prepare('SELECT * FROM files WHERE task_id = ? ORDER BY sender, name'),
      deleteFile: db.prepare('DELETE FROM files WHERE task_id = ? AND sender = ? AND name = ?'),
      // Oldest first, through the created_ms index, in bounded batches.
      expired: db.prepare('SELECT * FROM files WHERE created_ms < ? ORDER BY created_ms LIMIT 1000'),
      storedNames: db.prepare('SELECT stored_as FROM files'),
    };
  }

  private migrate(): void {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)',
    );
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    MIGRATIONS.forEach((sql, i) => {
      if (applied.has(i + 1)) return;
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(i + 1, new Date().toISOString());
      })();
    });
  }

  /** Creates a sender or reader; returns its secret (shown once, only its hash is kept). */
  createPrincipal(kind: PrincipalKind, name: string): string {
    const secret = generateSecret(kind);
    try {
      this.stmts.insertPrincipal.run(kind, name, hashSecret(secret), new Date().toISOString());
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE')
        throw new Error(`a ${kind} named "${name}" already exists`);
      throw e;
    }
    return secret;
  }

  authenticate(secret: string): Principal | null {
    const row = this.stmts.byHash.get(hashSecret(secret)) as
      { id: number; kind: PrincipalKind; name: string; enabled: number; created_at: string } | undefined;
    return row
      ? { id: row.id, kind: row.kind, name: row.name, enabled: row.enabled === 1, createdAt: row.created_at }
      : null;
  }

  listPrincipals(): Principal[] {
    return (
      this.stmts.list.all() as { id: number; kind: PrincipalKind; name: string; enabled: number; created_at: string }[]
    ).map((r) => ({ id: r.id, kind: r.kind, name: r.name, enabled: r.enabled === 1, createdAt: r.created_at }));
  }

  setEnabled(kind: PrincipalKind, name: string, enabled: boolean): boolean {
    return this.stmts.setEnabled.run(enabled ? 1 : 0, kind, name).changes === 1;
  }

  /** A new secret; the old one stops working at once. Null when there is no such principal. */
  rotateSecret(kind: PrincipalKind, name: string): string | null {
    const secret = generateSecret(kind);
    return this.stmts.setSecret.run(hashSecret(secret), kind, name).changes === 1 ? secret : null;
  }

  countFiles(taskId: string, sender: string): number {
    return (this.stmts.countFiles.get(taskId, sender) as { n: number }).n;
  }

  getFile(taskId: string, sender: string, name: string): StoredFile | null {
    const row = this.stmts.getFile.get(taskId, sender, name) as FileRow | undefined;
    return row ? toFile(row) : null;
  }

  /**
   * Records an uploaded file. The same bytes again keep the first copy (`duplicate`); other bytes
   * replace the sender's own earlier file (`previous` is then the file to delete from disk).
   */
  recordFile(
    file: Omit<StoredFile, 'createdAt'>,
    now: Date = new Date(),
  ): { duplicate: StoredFile | null; previous: StoredFile | null } {
    return this.db.transaction(() => {
      const existing = this.getFile(file.taskId, file.sender, file.name);
      if (existing && existing.sha256 === file.sha256 && existing.size === file.size)
        return { duplicate: existing, previous: null };
      this.stmts.upsertFile.run({ ...file, createdAt: now.toISOString(), createdMs: now.getTime() });
      return { duplicate: null, previous: existing };
    })();
  }

  listFiles(taskId: string): StoredFile[] {
    return (this.stmts.listFiles.all(taskId) as FileRow[]).map(toFile);
  }

  deleteFile(taskId: string, sender: string, name: string): StoredFile | null {
    return this.db.transaction(() => {
      const existing = this.getFile(taskId, sender, name);
      if (existing) this.stmts.deleteFile.run(taskId, sender, name);
      return existing;
    })();
  }

  /** Removes and returns up to 1000 records older than `cutoffMs` (the caller deletes their bytes). */
  takeExpired(cutoffMs: number): StoredFile[] {
    return this.db.transaction(() => {
      const rows = (this.stmts.expired.all(cutoffMs) as FileRow[]).map(toFile);
      for (const r of rows) this.stmts.deleteFile.run(r.taskId, r.sender, r.name);
      return rows;
    })();
  }

  storedNames(): Set<string> {
    return new Set((this.stmts.storedNames.all() as { stored_as: string }[]).map((r) => r.stored_as));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
