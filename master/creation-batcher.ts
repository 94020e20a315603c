/**
 * Group commit for task creation. Creations that arrive together (in one turn of the event loop,
 * or while the previous batch is still being written) are handed to one `write` call, which puts
 * them in one transaction; each caller is answered only once that call has returned, i.e. after
 * the commit. Under load most of a creation's cost was SQLite's own BEGIN/COMMIT and the WAL
 * frames it writes per commit (profile in BENCHMARKS.md, section 3d): a batch pays them once.
 *
 * `write` answers one outcome per item, in order: a refusal of one item (a quota, an unknown
 * site) is that item's alone. If `write` throws, nothing of the batch was committed and every item
 * of the batch is refused with that error.
 */

/** What `write` answers for one item. */
export type CreationOutcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

interface Pending<I, R> {
  item: I;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

/** Thrown by `submit` once the batcher is closed (the store is shutting down). */
export class CreationBatcherClosedError extends Error {
  constructor() {
    super('the registry store is closing; no more tasks are accepted');
    this.name = 'CreationBatcherClosedError';
  }
}

/** Largest batch handed to one `write`: bounds how long one transaction holds the write lock. */
export const MAX_CREATIONS_PER_BATCH = 256;

export class CreationBatcher<I, R> {
  private pending: Pending<I, R>[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  /** Set while an asynchronous `write` runs; new items wait for it and form the next batch. */
  private writing: Promise<void> | null = null;
  private closed = false;

  /**
   * @param write writes a batch in one transaction and answers one outcome per item, in order.
   * @param maxBatch largest number of items per `write`.
   */
  constructor(
    private readonly write: (items: I[]) => CreationOutcome<R>[] | Promise<CreationOutcome<R>[]>,
    private readonly maxBatch = MAX_CREATIONS_PER_BATCH,
  ) {}

  /** Resolves with the item's outcome once the batch holding it has been written. */
  submit(item: I): Promise<R> {
    if (this.closed) return Promise.reject(new CreationBatcherClosedError());
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Writes what is pending now and waits for every write under way; later `submit`s are refused.
   * Idempotent. Call before closing what `write` writes to.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    while (this.writing || this.pending.length > 0) {
      if (this.writing) await this.writing;
      else await this.flush();
    }
  }

  private schedule(): void {
    // setImmediate runs after the I/O callbacks of this turn: every request whose body arrived
    // in this turn has reached `submit` by then (their handlers run on microtasks).
    if (this.scheduled || this.writing) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = null;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const taken = this.pending;
    this.pending = [];
    const written = this.writeAll(taken);
    // A synchronous write (SQLite) is already done: no need to hold new items back.
    if (written) {
      this.writing = written.finally(() => {
        this.writing = null;
        if (this.pending.length > 0 && !this.closed) this.schedule();
      });
      await this.writing;
    }
  }

  /** Writes `taken` in batches of maxBatch; a promise only if some `write` was asynchronous. */
  private writeAll(taken: Pending<I, R>[]): Promise<void> | null {
    const waits: Promise<void>[] = [];
    for (let start = 0; start < taken.length; start += this.maxBatch) {
      const batch = taken.slice(start, start + this.maxBatch);
      let outcomes: CreationOutcome<R>[] | Promise<CreationOutcome<R>[]>;
      try {
        outcomes = this.write(batch.map((p) => p.item));
      } catch (e) {
        for (const p of batch) p.reject(e);
        continue;
      }
      if (outcomes instanceof Promise)
        waits.push(
          outcomes.then(
            (o) => settle(batch, o),
            (e: unknown) => batch.forEach((p) => p.reject(e)),
          ),
        );
      else settle(batch, outcomes);
    }
    return waits.length > 0 ? Promise.all(waits).then(() => undefined) : null;
  }
}

function settle<I, R>(batch: Pending<I, R>[], outcomes: CreationOutcome<R>[]): void {
  batch.forEach((p, i) => {
    const outcome = outcomes[i];
    if (!outcome) p.reject(new Error(`the batch write answered ${outcomes.length} outcomes for ${batch.length} items`));
    else if (outcome.ok) p.resolve(outcome.value);
    else p.reject(outcome.error);
  });
}
