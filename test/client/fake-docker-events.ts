import { EventEmitter, once } from 'node:events';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { capturingLogger, type LoggedLine } from '../helpers/capturing-logger.js';

/*
 * Just enough of dockerode for client/network-slots.ts, with an event stream a test can end, fail
 * or hold back: the boundary where a Docker restart or a cut socket shows up in the pool.
 */

interface FakeContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
  running: boolean;
}

/** One line of Docker's event stream: container `id` died. */
export function dieEvent(id: string): string {
  return `${JSON.stringify({ status: 'die', id, Type: 'container' })}\n`;
}

function notFound(): Error {
  return Object.assign(new Error('no such container'), { statusCode: 404 });
}

export class FakeDocker {
  readonly containers = new Map<string, FakeContainer>();
  /** Every event stream handed out, in order. */
  readonly streams: PassThrough[] = [];
  /** getEvents fails (as when dockerd is down) while this is set. */
  eventsDown = false;
  /** Emits 'getEvents' on every subscription attempt, 'kill' (id) on every kill. */
  readonly calls = new EventEmitter();
  /** Called with each new event stream before the pool reads it (to put events in it first). */
  onSubscribe: ((stream: PassThrough) => void) | null = null;
  /** Container inspections are answered only once this settles (to order them after an event). */
  inspectAfter: Promise<unknown> | null = null;
  /** Containers inspected, in order. */
  readonly inspections: string[] = [];
  /** Containers killed, in order. */
  readonly kills: string[] = [];
  /** Whether each getEvents call succeeded, in order. */
  readonly subscriptions: boolean[] = [];
  private next = 0;

  get docker(): Docker {
    return this as unknown as Docker;
  }

  /** A run container of `site` for `runId` (what the pool stops when the run's holder dies). */
  addRun(site: string, runId: number): string {
    const id = `run-${runId}-${(this.next += 1)}`;
    this.containers.set(id, {
      id,
      name: id,
      running: true,
      labels: { 'org.pht.managed-by': 'pht-client', 'org.pht.site': site, 'org.pht.run-id': String(runId) },
    });
    return id;
  }

  /** Waits for the `n`-th call to getEvents (counting from 1) and returns whether it succeeded. */
  async nthSubscription(n: number): Promise<boolean> {
    while (this.subscriptions.length < n) await once(this.calls, 'getEvents');
    return this.subscriptions[n - 1]!;
  }

  /** Resolves once the container `id` has been killed (at once if it already was). */
  async killed(id: string): Promise<void> {
    while (this.containers.get(id)?.running) await once(this.calls, 'kill');
  }

  getImage() {
    return { inspect: async () => ({}) };
  }

  async listContainers(options: { all?: boolean; filters?: { label?: string[] } }) {
    const wanted = (options.filters?.label ?? []).map((l) => l.split('=') as [string, string]);
    return [...this.containers.values()]
      .filter((c) => (options.all || c.running) && wanted.every(([k, v]) => c.labels[k] === v))
      .map((c) => ({ Id: c.id, Labels: c.labels, State: c.running ? 'running' : 'exited', HostConfig: {} }));
  }

  async createContainer(spec: { name: string; Labels: Record<string, string> }) {
    const id = `holder-${(this.next += 1)}`;
    const c: FakeContainer = { id, name: spec.name, labels: spec.Labels, running: false };
    this.containers.set(id, c);
    return {
      id,
      start: async () => {
        c.running = true;
      },
    };
  }

  getContainer(idOrName: string) {
    const find = () => [...this.containers.values()].find((c) => c.id === idOrName || c.name === idOrName);
    return {
      inspect: async () => {
        await this.inspectAfter;
        this.inspections.push(idOrName);
        const c = find();
        if (!c) throw notFound();
        return { State: { Running: c.running } };
      },
      kill: async () => {
        const c = find();
        if (!c) throw notFound();
        c.running = false;
        this.kills.push(c.id);
        this.calls.emit('kill', c.id);
      },
      remove: async () => {
        const c = find();
        if (!c) throw notFound();
        this.containers.delete(c.id);
      },
    };
  }

  async getEvents(): Promise<PassThrough> {
    this.subscriptions.push(!this.eventsDown);
    this.calls.emit('getEvents');
    if (this.eventsDown) throw new Error('connect ECONNREFUSED /var/run/docker.sock');
    const stream = new PassThrough();
    this.streams.push(stream);
    this.onSubscribe?.(stream);
    return stream;
  }

  /** The holder `id` dies: Docker reports it on the current stream (when `report`) as `die`. */
  die(id: string, report: boolean): void {
    this.containers.get(id)!.running = false;
    if (report) this.streams.at(-1)!.write(dieEvent(id));
  }
}

/** A logger whose lines are kept and can be awaited (an event per line) instead of slept for. */
export function captureLog() {
  const lines: LoggedLine[] = [];
  const events = new EventEmitter();
  const logger = capturingLogger(lines, { level: 'debug', onLine: (line) => events.emit('line', line) });
  const waitFor = async (match: RegExp) => {
    const seen = lines.find((l) => match.test(l.message));
    if (seen) return seen;
    for (;;) {
      const [line] = (await once(events, 'line')) as [(typeof lines)[number]];
      if (match.test(line.message)) return line;
    }
  };
  const count = (match: RegExp) => lines.filter((l) => match.test(l.message)).length;
  return { logger, lines, waitFor, count };
}
