/**
 * The floors of bench/capacity.ts's task creations: a bare node:http server, started by that
 * benchmark as its own process and measured by the same autocannon at the same connections.
 *
 *   node dist/bench/capacity-floor.js http
 *     answers every POST with a fixed 201 JSON body once the body has arrived: HTTP alone.
 *   node dist/bench/capacity-floor.js per-request DB_FILE
 *     parses the body as JSON and writes the task and its run into the registry's own schema
 *     (migrated and seeded by the registry's store: same tables, indexes and triggers) in one
 *     transaction per request, then answers the task as JSON.
 *   node dist/bench/capacity-floor.js batched DB_FILE
 *     the same writes, one transaction for all the requests that arrived in one event-loop turn.
 *
 * No authentication, validation, quota, logging or routing: what is left is the cost of HTTP,
 * JSON and SQLite that no registry can avoid. Prints `floor listening PORT` when ready.
 */
import http from 'node:http';
import Database from 'better-sqlite3';

type Mode = 'http' | 'per-request' | 'batched';

interface Creation {
  image: string;
  sites: string[];
  ownerId: number;
  answer: (status: number, body: string) => void;
}

const USAGE = 'usage: node dist/bench/capacity-floor.js http | per-request DB_FILE | batched DB_FILE';

function main(): void {
  const [mode, dbFile, ...rest] = process.argv.slice(2);
  if (
    rest.length > 0 ||
    (mode !== 'http' && mode !== 'per-request' && mode !== 'batched') ||
    (mode !== 'http' && !dbFile)
  ) {
    console.error(USAGE);
    process.exit(2);
  }
  const write = mode === 'http' ? null : openWriter(dbFile!, mode);
  let nextOwner = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = (status: number, body: string) => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
        res.end(body);
      };
      if (!write) return answer(201, '{"id":1,"status":"queued"}');
      let body: { image?: unknown; sites?: unknown };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        return answer(400, '{"code":"bad_json"}');
      }
      if (typeof body.image !== 'string' || !Array.isArray(body.sites)) return answer(400, '{"code":"bad_body"}');
      write.create({ image: body.image, sites: body.sites as string[], ownerId: nextOwner++, answer });
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address && typeof address === 'object') console.log(`floor listening ${address.port}`);
  });
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    write?.close();
    process.exit(0);
  });
}

function openWriter(file: string, mode: Exclude<Mode, 'http'>) {
  const db = new Database(file);
  // The registry's pragmas (master/store/sqlite-store.ts).
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const owners = db.prepare("SELECT id FROM principals WHERE kind = 'user' ORDER BY id").pluck().all() as number[];
  const siteByName = db.prepare("SELECT id FROM principals WHERE kind = 'site' AND name = ?").pluck();
  const insertTask = db.prepare(
    'INSERT INTO tasks (owner_id, name, image, config, config_bytes, config_type, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const insertRun = db.prepare("INSERT INTO runs (task_id, site_id, status, created_at) VALUES (?, ?, 'queued', ?)");
  const config = Buffer.from('null');

  /** One task and its runs; the answer is built from what was written. */
  const insertOne = (c: Creation): string => {
    const now = new Date().toISOString();
    const ownerId = owners[c.ownerId % owners.length]!;
    const taskId = Number(
      insertTask.run(ownerId, null, c.image, config, config.length, 'application/json', 'queued', now, now)
        .lastInsertRowid,
    );
    const runs = c.sites.map((site) => {
      const siteId = siteByName.get(site) as number | undefined;
      if (siteId === undefined) throw new Error(`unknown site ${site}`);
      const id = Number(insertRun.run(taskId, siteId, now).lastInsertRowid);
      return { id, taskId, site, status: 'queued', attempt: 0, createdAt: now };
    });
    return JSON.stringify({ id: taskId, name: null, image: c.image, status: 'queued', createdAt: now, runs });
  };

  const one = db.transaction(insertOne);
  let pending: Creation[] = [];
  const many = db.transaction((batch: Creation[]) => batch.map(insertOne));
  const flush = () => {
    const batch = pending;
    pending = [];
    const answers = many(batch);
    batch.forEach((c, i) => c.answer(201, answers[i]!));
  };
  return {
    create(c: Creation): void {
      if (mode === 'per-request') return c.answer(201, one(c));
      if (pending.push(c) === 1) setImmediate(flush);
    },
    close(): void {
      if (pending.length > 0) flush();
      db.close();
    },
  };
}

main();
