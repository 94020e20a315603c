/**
 * Wake-ups for long polls: "site X may have work", "task Y changed". Waiters live in this process;
 * with several registry processes on one database (PostgreSQL), an EventBus carries every
 * notification to the other processes too (LISTEN/NOTIFY), so a long poll waiting here wakes when
 * a task is posted on another process.
 */
export type EventKind = 'site' | 'task';

/** Carries notifications between registry processes. */
export interface EventBus {
  /** Tells the other processes; fire and forget (a lost notification only delays a waiter). */
  publish(kind: EventKind, key: string): void;
  /** Whether notifications from the other processes arrive now (the listening connection is up). */
  connected(): boolean;
  close(): Promise<void>;
}

export class RegistryEvents {
  private readonly siteWaiters = new Map<string, Set<() => void>>();
  private readonly taskWaiters = new Map<number, Set<() => void>>();
  private bus: EventBus | null = null;
  /**
   * Site epochs: a number that changes whenever a site may have been given work (a site
   * notification from this process or another, a task posted for it, every site after the bus
   * lost its connection). A long poll that found nothing queued when its site's epoch was E need
   * not ask the database again while the epoch is still E (master/empty-claims.ts).
   */
  private readonly epochs = new Map<string, number>();
  private allSitesEpoch = 0;
  private lastEpoch = 0;

  /** From now on, notifications also go to the other registry processes through `bus`. */
  attach(bus: EventBus): void {
    this.bus = bus;
  }

  notifySite(site: string): void {
    this.markSite(site);
    wakeAll(this.siteWaiters, site);
    this.bus?.publish('site', site);
  }

  notifyTask(taskId: number): void {
    wakeAll(this.taskWaiters, taskId);
    this.bus?.publish('task', String(taskId));
  }

  /** A notification from another process: wakes this process's waiters only. */
  deliver(kind: EventKind, key: string): void {
    if (kind === 'site') {
      this.markSite(key);
      wakeAll(this.siteWaiters, key);
    } else if (/^[0-9]{1,15}$/.test(key)) wakeAll(this.taskWaiters, Number(key));
  }

  /**
   * Wakes every waiter: after the bus lost its connection, notifications may have been missed,
   * and a woken waiter only looks again at the database.
   */
  wakeEverything(): void {
    this.allSitesEpoch = ++this.lastEpoch;
    for (const key of [...this.siteWaiters.keys()]) wakeAll(this.siteWaiters, key);
    for (const key of [...this.taskWaiters.keys()]) wakeAll(this.taskWaiters, key);
  }

  /** Notes that `site` may have work, without waking anyone (a batch hand-out is on its way). */
  markSite(site: string): void {
    this.epochs.set(site, ++this.lastEpoch);
  }

  /**
   * The site's epoch, or null when it cannot be trusted: while the bus to the other processes is
   * down, their notifications are missed (on reconnection every site's epoch changes).
   */
  siteEpoch(site: string): number | null {
    if (this.bus && !this.bus.connected()) return null;
    return Math.max(this.epochs.get(site) ?? 0, this.allSitesEpoch);
  }

  /** Resolves on the next notification for the site, after `ms`, or when `signal` aborts. */
  waitForSite(site: string, ms: number, signal: AbortSignal): Promise<void> {
    return waitOn(this.siteWaiters, site, ms, signal);
  }

  waitForTask(taskId: number, ms: number, signal: AbortSignal): Promise<void> {
    return waitOn(this.taskWaiters, taskId, ms, signal);
  }

  /**
   * Calls `wake` once, on the next notification for the site or after `ms`, unless the returned
   * function (idempotent) cancels it first. What a parked long poll holds while it waits: one
   * entry and one timer, no promise, AbortController or listener (issue 13, target 5: memory per
   * parked poll at 10,000 sites). `wake` is told whether the time ran out (rather than a
   * notification): a timer may fire a moment before Date.now() reaches a deadline computed from it.
   */
  parkForSite(site: string, ms: number, wake: (timedOut: boolean) => void): () => void {
    return park(this.siteWaiters, site, ms, wake);
  }

  /** Number of open waits, for /healthz and benchmarks. */
  waiting(): { sites: number; tasks: number } {
    let sites = 0;
    let tasks = 0;
    for (const s of this.siteWaiters.values()) sites += s.size;
    for (const s of this.taskWaiters.values()) tasks += s.size;
    return { sites, tasks };
  }
}

function wakeAll<K>(map: Map<K, Set<() => void>>, key: K): void {
  const set = map.get(key);
  if (!set) return;
  map.delete(key);
  for (const wake of set) wake();
}

function waitOn<K>(map: Map<K, Set<() => void>>, key: K, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const done = () => {
      signal.removeEventListener('abort', done);
      cancel();
      resolve();
    };
    const cancel = park(map, key, ms, done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function park<K>(map: Map<K, Set<() => void>>, key: K, ms: number, wake: (timedOut: boolean) => void): () => void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  let parked = true;
  const cancel = () => {
    if (!parked) return;
    parked = false;
    clearTimeout(timer);
    const current = map.get(key);
    if (current) {
      current.delete(fire);
      if (current.size === 0) map.delete(key);
    }
  };
  const fire = (timedOut = false) => {
    if (!parked) return;
    cancel();
    wake(timedOut);
  };
  const timer = setTimeout(fire, Math.max(0, ms), true);
  set.add(fire);
  return cancel;
}
