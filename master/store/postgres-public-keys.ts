import type pg from 'pg';
import type { KeyKind, KeyRecord, PublicKeyBody } from '../../shared/key-schemas.js';
import { keyRecordOf, planRegistration, type PublicKeys, type StoredKeyRow } from '../public-keys.js';

/**
 * The PostgreSQL backend's public keys (table of migration 0005), on the registry store's pool.
 * The rules are the SQLite backend's (planRegistration); what differs is the locking.
 */
export class PostgresPublicKeys implements PublicKeys {
  constructor(private readonly pool: pg.Pool) {}

  async get(kind: KeyKind, name: string): Promise<KeyRecord> {
    const { rows } = await this.pool.query<StoredKeyRow>({
      name: 'publicKey',
      text: 'SELECT * FROM public_keys WHERE kind = $1 AND name = $2',
      values: [kind, name],
    });
    return keyRecordOf(rows[0], kind, name);
  }

  async register(
    kind: KeyKind,
    name: string,
    body: PublicKeyBody,
    rotation: unknown,
    url: string | null = null,
  ): Promise<{ record: KeyRecord; changed: boolean }> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // Two first registrations for one name in two processes: no row exists to lock, so a
      // transaction-scoped advisory lock on the name makes the second see the first's key (and
      // need a rotation signed by it) instead of overwriting it.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`public_keys/${kind}/${name}`]);
      const { rows } = await client.query<StoredKeyRow>('SELECT * FROM public_keys WHERE kind = $1 AND name = $2', [
        kind,
        name,
      ]);
      const plan = planRegistration(rows[0], kind, name, body, rotation, url);
      if ('unchanged' in plan) {
        await client.query('COMMIT');
        return { record: plan.unchanged, changed: false };
      }
      const written = await client.query<StoredKeyRow>(
        `INSERT INTO public_keys (kind, name, public_key, fingerprint, rotations, url, revoked_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
         ON CONFLICT (kind, name) DO UPDATE SET public_key = excluded.public_key, fingerprint = excluded.fingerprint,
           rotations = excluded.rotations, url = excluded.url, revoked_at = NULL, updated_at = excluded.updated_at
         RETURNING *`,
        [
          kind,
          name,
          JSON.stringify(body),
          plan.fingerprint,
          JSON.stringify(plan.rotations),
          url,
          new Date().toISOString(),
        ],
      );
      await client.query('COMMIT');
      return { record: keyRecordOf(written.rows[0], kind, name), changed: true };
    } catch (e) {
      await client.query('ROLLBACK').catch((rollback: unknown) => {
        broken = rollback as Error;
      });
      throw e;
    } finally {
      client.release(broken);
    }
  }

  async revoke(kind: KeyKind, name: string): Promise<boolean> {
    const now = new Date().toISOString();
    const { rowCount } = await this.pool.query(
      'UPDATE public_keys SET revoked_at = $1, updated_at = $1 WHERE kind = $2 AND name = $3 AND revoked_at IS NULL',
      [now, kind, name],
    );
    return rowCount === 1;
  }

  async withoutActiveKey(kind: KeyKind, names: readonly string[]): Promise<string[]> {
    // One query for all the names, however many sites a task targets.
    const { rows } = await this.pool.query<{ name: string }>({
      name: 'activeKeyNames',
      text: 'SELECT name FROM public_keys WHERE kind = $1 AND name = ANY($2::text[]) AND revoked_at IS NULL',
      values: [kind, [...names]],
    });
    const active = new Set(rows.map((r) => r.name));
    return names.filter((n) => !active.has(n));
  }

  /** The pool belongs to the registry store, which closes it. */
  async close(): Promise<void> {}
}
