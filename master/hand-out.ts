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
    for (const { siteId, run } of claimed) {
      const site = siteIds.get(siteId)!;
      const receivers = this.bySite.get(site)?.receivers;
      const first = receivers?.values().next();
      // With the SQLite store the claim is synchronous, so the poll is still there. On PostgreSQL
      // (one round trip) a poll may hang up meanwhile: another poll of the site takes the run,
      // or else the run's lease requeues it.
      if (!first || first.done) continue;
      receivers!.delete(first.value);
      first.value(run);
      handed.add(site);
    }
    return handed;
  }

  /** Number of waiting polls (for tests). */
  size(): number {
    let n = 0;
    for (const w of this.bySite.values()) n += w.receivers.size;
    return n;
  }
}
