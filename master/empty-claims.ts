/**
 * Which sites this registry process last found with nothing queued, and at which site epoch
 * (RegistryEvents.siteEpoch). A poll of such a site that arrives while the epoch is unchanged is
 * answered (or parked) without asking the database: every path that queues a run for a site
 * changes its epoch, here or through the bus from another process (a task posted, a run
 * requeued, the bus reconnected). At 10,000 long-polling sites most polls are the ones that come
 * back after a 204, and each one asked PostgreSQL again for nothing: 0.6 of the machine's 2 cores
 * went to PostgreSQL in bench:scale (issue 10). A real claim is still made at least once every
 * `recheckMs` per site, so a path that forgot to mark its site would cost a delay, never a run.
 */
export class EmptyClaims {
  private readonly bySite = new Map<number, { epoch: number; at: number }>();

  constructor(
    private readonly recheckMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a claim for `siteId` now can only find nothing (`epoch` null: unknown, ask). */
  knownEmpty(siteId: number, epoch: number | null): boolean {
    if (epoch === null) return false;
    const seen = this.bySite.get(siteId);
    return seen !== undefined && seen.epoch === epoch && this.now() - seen.at < this.recheckMs;
  }

  /**
   * Records a claim's result. `epoch` must be the site's epoch read before the claim began: a
   * run queued after that moment changed the epoch, so it is never hidden by this record.
   */
  claimed(siteId: number, epoch: number | null, found: boolean): void {
    if (found || epoch === null) this.bySite.delete(siteId);
    else this.bySite.set(siteId, { epoch, at: this.now() });
  }
}
