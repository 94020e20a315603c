/**
 * In-process wake-ups for long polls: "site X may have work", "task Y changed". A registry
 * spread over several processes (PostgreSQL backend) would implement the same interface with
 * LISTEN/NOTIFY.
 */
export class RegistryEvents {
  private readonly siteWaiters = new Map<string, Set<() => void>>();
  private readonly taskWaiters = new Map<number, Set<() => void>>();

  notifySite(site: string): void {
    wakeAll(this.siteWaiters, site);
  }

  notifyTask(taskId: number): void {
    wakeAll(this.taskWaiters, taskId);
  }

  /** Resolves on the next notification for the site, after `ms`, or when `signal` aborts. */
  waitForSite(site: string, ms: number, signal: AbortSignal): Promise<void> {
    return waitOn(this.siteWaiters, site, ms, signal);
  }

  waitForTask(taskId: number, ms: number, signal: AbortSignal): Promise<void> {
    return waitOn(this.taskWaiters, taskId, ms, signal);
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
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      const current = map.get(key);
      if (current) {
        current.delete(done);
        if (current.size === 0) map.delete(key);
      }
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    set.add(done);
  });
}
