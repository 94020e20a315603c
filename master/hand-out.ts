import type { RunAssignment } from '../shared/types.js';
import type { RegistryStore } from './store/registry-store.js';

type Receiver = (run: RunAssignment) => void;

interface Waiting {
  siteId: number;
  receivers: Set<Receiver>;
}

/**
 * Long polls waiting for work, by site name, so that a new task's runs are handed to them from
 * one claim transaction for all their sites. Waking every poll to claim for itself cost one write
 * transaction (and one task-status recount over all of the task's runs) per site: a broadcast to
 * 1,000 waiting sites was served one site at a time (issue 13, target 1).
 */
export class WaitingPolls {
  private readonly bySite = new Map<string, Waiting>();

  /**
   * `requeued` is told the sites whose claimed run went back to the queue because no poll of
   * theirs was left here to take it (see offer): the site's next poll may be parked on another
   * registry process, which must be woken (RegistryEvents.notifySite).
   */
  constructor(private readonly requeued: (site: string) => void = () => undefined) {}

  /**
   * Registers a waiting poll; `receive` is called at most once, with a run already claimed for the
   * site. The returned function unregisters it and must be called as soon as the poll stops
   * waiting, so that no run is claimed for a poll that will not answer.
   */
  add(site: string, siteId: number, receive: Receiver): () => void {
    let waiting = this.bySite.get(site);
    if (!waiting) this.bySite.set(site, (waiting = { siteId, receivers: new Set() }));
    const entry = waiting;
    let done = false;
    const receiver: Receiver = (run) => {
      if (done) return;
      done = true;
      receive(run);
    };
    entry.receivers.add(receiver);
    return () => {
      done = true;
      entry.receivers.delete(receiver);
      if (entry.receivers.size === 0 && this.bySite.get(site) === entry) this.bySite.delete(site);
    };
  }

  /**
   * Claims, in one transaction, the next run of every site in `sites` that has a poll waiting,
   * and hands each to the oldest such poll. Answers the sites that received a run; the others
   * are for the caller to wake as usual. Without a batch claim in the store, hands out nothing.
   */
  async offer(store: RegistryStore, sites: Iterable<string>, leaseMs: number): Promise<Set<string>> {
    const handed = new Set<string>();
    if (!store.claimNextRuns) return handed;
    const siteIds = new Map<number, string>();
    for (const site of new Set(sites)) {
      const waiting = this.bySite.get(site);
      if (waiting && waiting.receivers.size > 0) siteIds.set(waiting.siteId, site);
    }
    if (siteIds.size === 0) return handed;
    const claimed = await store.claimNextRuns([...siteIds.keys()], leaseMs);
    const unreceived: { site: string; run: RunAssignment }[] = [];
    for (const { siteId, run } of claimed) {
      const site = siteIds.get(siteId)!;
      const receivers = this.bySite.get(site)?.receivers;
      const first = receivers?.values().next();
      // With the SQLite store the claim is synchronous, so the poll is still there. On PostgreSQL
      // (one round trip, seconds under a 10,000-site broadcast) a poll may hang up or reach the
      // end of its wait meanwhile: another poll of the site parked here takes the run, or else it
      // goes back to the queue at once.
      if (!first || first.done) {
        unreceived.push({ site, run });
        continue;
      }
      receivers!.delete(first.value);
      first.value(run);
      handed.add(site);
    }
    if (unreceived.length > 0) await this.requeue(store, unreceived);
    return handed;
  }

  /**
   * Runs claimed for polls that left: left assigned, each waited out its lease (60 s) before the
   * sweep queued it again, and the site, polling again meanwhile, got nothing. At 10,000 sites,
   * where a batch claim can take seconds, that lease was the tail of every broadcast (bench:scale,
   * BENCHMARKS.md, "Issue 10 at 10,000 sites"). A store without releaseClaimedRuns leaves them to
   * the lease.
   */
  private async requeue(store: RegistryStore, unreceived: { site: string; run: RunAssignment }[]): Promise<void> {
    if (!store.releaseClaimedRuns) return;
    // Should the database fail here, the lease still requeues them: no reason to fail the offer.
    const released = new Set(
      await store
        .releaseClaimedRuns(unreceived.map(({ run }) => ({ id: run.id, attempt: run.attempt })))
        .catch(() => [] as number[]),
    );
    for (const { site, run } of unreceived) if (released.has(run.id)) this.requeued(site);
  }

  /** Whether a poll of the site waits here. */
  has(site: string): boolean {
    return (this.bySite.get(site)?.receivers.size ?? 0) > 0;
  }

  /** Number of waiting polls (for tests). */
  size(): number {
    let n = 0;
    for (const w of this.bySite.values()) n += w.receivers.size;
    return n;
  }
}
