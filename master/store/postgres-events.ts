import crypto from 'node:crypto';
import pg from 'pg';
import { coerceError } from '../../shared/errors.js';
import type { EventBus, EventKind } from '../events.js';

export interface PostgresEventBusOptions {
  connectionString: string;
  /** Pool used to send notifications (LISTEN keeps its own dedicated connection). */
  pool: pg.Pool;
  /** A notification published by another registry process. */
  onEvent(kind: EventKind, key: string): void;
  /** The listening connection came back after a loss: notifications may have been missed. */
  onReconnect(): void;
  /**
   * Principals changed (revoked, disabled, rotated: migration 0007's trigger, whoever made the
   * change), or the listening connection was lost or came back (`listening`), so changes may have
   * been missed: caches of authenticated principals must not be trusted until it is back.
   */
  principals?: { changed(): void; setWatching(up: boolean): void };
  onError(message: string, error: Error): void;
}

const KIND_CODES: Record<EventKind, string> = { site: 's', task: 't' };
const CODE_KINDS: Record<string, EventKind> = { s: 'site', t: 'task' };
/** Sent by the database itself (migration 0007's trigger on principals), never by a registry. */
const PRINCIPALS_CODE = 'p';
const MAX_RECONNECT_DELAY_MS = 5_000;

/**
 * LISTEN/NOTIFY between registry processes. Notifications published in the same tick are sent
 * in one statement (a task for a thousand sites is one round trip). Each carries this process's
 * id, so a process skips its own: it has already woken its waiters. The channel is named after
 * the schema, so registries in different schemas of one database (the test suite) do not wake
 * each other.
 */
export class PostgresEventBus implements EventBus {
  private readonly origin = crypto.randomBytes(6).toString('base64url');
  private pending: string[] = [];
  private flushScheduled = false;
  private listener: pg.Client | null = null;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private currentBarrier: Promise<boolean> | null = null;
  private nextBarrier: Promise<boolean> | null = null;
  private readonly inFlight = new Set<Promise<void>>();

  private constructor(
    private readonly options: PostgresEventBusOptions,
    readonly channel: string,
  ) {}

  static async start(options: PostgresEventBusOptions): Promise<PostgresEventBus> {
    const { rows } = await options.pool.query<{ schema: string }>('SELECT current_schema() AS schema');
    const schema = rows[0]?.schema ?? 'public';
    const bus = new PostgresEventBus(options, schema === 'public' ? 'pht_events' : `pht_events_${schema}`);
    await bus.listen();
    return bus;
  }

  publish(kind: EventKind, key: string): void {
    if (this.closed) return;
    // Keys are site names and task ids; a space or an oversized key would break the payload.
    if (key.length > 200 || key.includes(' ')) return;
    this.pending.push(`${this.origin} ${KIND_CODES[kind]} ${key}`);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const payloads = this.pending;
    this.pending = [];
    if (payloads.length === 0) return;
    const sent = this.options.pool
      .query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [this.channel, payloads])
      .then(
        () => undefined,
        (e: unknown) => this.options.onError('could not notify the other registry processes', coerceError(e)),
      );
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
  }

  private async listen(): Promise<void> {
    // Named after its channel, so an operator (or a test) can tell which registry's listener it is.
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: `pht-events ${this.channel}`.slice(0, 63),
    });
    client.on('notification', (n) => this.receive(n.payload ?? ''));
    const lost = (e?: Error) => {
      if (this.listener !== client) return;
      this.listener = null;
      this.options.principals?.setWatching(false);
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (!this.closed) {
        this.options.onError('lost the connection that listens for other registry processes', e ?? new Error('ended'));
        this.scheduleReconnect();
      }
    };
    client.on('error', (e) => lost(e));
    client.on('end', () => lost());
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.options.principals?.setWatching(true);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** this.failures) * (0.5 + Math.random() / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.listen().then(
        () => {
          this.failures = 0;
          this.options.onReconnect();
        },
        () => {
          this.failures++;
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  private receive(payload: string): void {
    const [origin, code, ...rest] = payload.split(' ');
    if (origin === this.origin) return;
    if (code === PRINCIPALS_CODE) {
      this.options.principals?.changed();
      return;
    }
    const kind = code === undefined ? undefined : CODE_KINDS[code];
    if (kind) this.options.onEvent(kind, rest.join(' '));
  }

  /**
   * Resolves true once every notification committed before the call has been received (false
   * if the listening connection is down or fails meanwhile). PostgreSQL hands a listening session
   * the notifications that arrived during a statement before that statement's ReadyForQuery, so
   * one round trip on the listening connection is the barrier. Callers arriving while one is in
   * flight share the next: at most one in flight and one waiting, however many requests ask.
   */
  barrier(): Promise<boolean> {
    if (!this.listener) return Promise.resolve(false);
    if (this.nextBarrier) return this.nextBarrier;
    const after = this.currentBarrier ?? Promise.resolve(true);
    const next = after.then(() => {
      this.nextBarrier = null;
      this.currentBarrier = next;
      const client = this.listener;
      if (!client) return false;
      return client.query('SELECT 1').then(
        () => this.listener === client,
        () => false,
      );
    });
    this.nextBarrier = next;
    void next.finally(() => {
      if (this.currentBarrier === next) this.currentBarrier = null;
    });
    return next;
  }

  /** Whether the listening connection is up (for /healthz and tests). */
  connected(): boolean {
    return this.listener !== null;
  }

  /** Sends what is pending, then stops listening; the pool stays open (the store closes it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    await Promise.all(this.inFlight);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.listener;
    this.listener = null;
    this.options.principals?.setWatching(false);
    await client?.end().catch(() => undefined);
  }
}
