/**
 * Network slots: the gateway network's namespaces, prepared ahead of time.
 *
 * Joining the internal gateway network costs about 200 ms per container start (dockerd creates a
 * veth pair, asks IPAM for an address, writes iptables rules and moves the veth into a fresh
 * namespace). Instead, the client starts one long-lived "holder" container per concurrent slot on
 * that network, and each run's container joins a free holder's namespace (`NetworkMode:
 * container:<holder>`): its start then does no network work at all, like network "none".
 *
 * Isolation, slot by slot (each point is pinned by test/e2e/network-slots.test.ts):
 * - A run reaches only the gateway: the namespace sits on the same internal network, behind the
 *   same host firewall (INPUT: the gateway port only) as a per-run endpoint did.
 * - Runs do not reach each other: each concurrent run has its own holder, hence its own address,
 *   and the network has inter-container communication off.
 * - Nothing is left for the slot's next run: a slot is handed out again only after its run's
 *   container has stopped, and its processes (with their sockets, abstract Unix sockets included)
 *   died with its PID namespace. /etc/hosts, /etc/hostname and /etc/resolv.conf are the holder's
 *   files, mounted read-only into a run (its root file system is read-only) and owned by root.
 *   Connection tracking entries of the namespace outlive a run but carry no data and grant nothing.
 * - A run cannot alter or stop its holder: the holder is another PID namespace (invisible to the
 *   run), and runs have no capabilities (no NET_ADMIN to change addresses, routes or rules).
 *   A holder found dead when a slot is taken is replaced before the run's container is created;
 *   one that dies during a run takes the namespace's interface with it: the pool (watching Docker's
 *   events) stops that run, which fails, and the slot gets a new holder when it is next taken.
 *   When the event stream is lost (dockerd restarted, socket cut), the pool reconnects with backoff
 *   and then inspects the holder of every taken slot, so a death during the gap is not missed.
 * - Name resolution stays pinned to the gateway IP: the holder is created with it as its only
 *   name server, and runs share the holder's resolv.conf.
 *
 * The holder runs {@link HOLDER_PROGRAM}, 129 bytes of x86-64 code that only calls pause(): no
 * image has to be present or pulled for it, and it uses no memory to speak of. On other
 * architectures the pool is off and runs join the network one by one, as before.
 */
import Docker from 'dockerode';
import { retry, type BackoffOptions } from '../shared/abortable.js';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { ContainerEngine } from './container-engine.js';
import { DockerEngine } from './container-engine.js';

/** Labels of a holder; `managedBy` differs from run containers', so run recovery leaves holders alone. */
export const SLOT_LABELS = {
  managedBy: 'pht-client-network-slot',
  slot: 'org.pht.network-slot',
  network: 'org.pht.network',
} as const;

/** The local image the holders run: imported once from {@link HOLDER_PROGRAM}, never pulled. */
export const HOLDER_IMAGE = 'pht-local/network-slot-holder:1';

/**
 * A static x86-64 Linux program of 129 bytes: `for (;;) pause();`. Built here rather than shipped
 * as a binary so that every byte can be read: an ELF header, one loadable segment, seven bytes of
 * code. As PID 1 of its container it ignores every signal but SIGKILL, which is how Docker removes it.
 */
export function holderProgram(): Buffer {
  const base = 0x400000;
  const code = Buffer.from([
    0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
    0x0f, 0x05, //                   syscall
    0xeb, 0xf7, //                   jmp back to mov
  ]); // prettier-ignore
  const headerSize = 64;
  const segmentHeaderSize = 56;
  const size = headerSize + segmentHeaderSize + code.length;
  const elf = Buffer.alloc(size);
  elf.write('\x7fELF', 0, 'latin1');
  elf[4] = 2; // 64-bit
  elf[5] = 1; // little endian
  elf[6] = 1; // ELF version 1
  elf.writeUInt16LE(2, 16); // executable
  elf.writeUInt16LE(0x3e, 18); // x86-64
  elf.writeUInt32LE(1, 20);
  elf.writeBigUInt64LE(BigInt(base + headerSize + segmentHeaderSize), 24); // entry point
  elf.writeBigUInt64LE(BigInt(headerSize), 32); // program headers follow the ELF header
  elf.writeUInt16LE(headerSize, 52);
  elf.writeUInt16LE(segmentHeaderSize, 54);
  elf.writeUInt16LE(1, 56); // one program header, no section headers
  const ph = headerSize;
  elf.writeUInt32LE(1, ph); // PT_LOAD
  elf.writeUInt32LE(5, ph + 4); // readable, executable
  elf.writeBigUInt64LE(0n, ph + 8); // from file offset 0
  elf.writeBigUInt64LE(BigInt(base), ph + 16);
  elf.writeBigUInt64LE(BigInt(base), ph + 24);
  elf.writeBigUInt64LE(BigInt(size), ph + 32);
  elf.writeBigUInt64LE(BigInt(size), ph + 40);
  elf.writeBigUInt64LE(0x1000n, ph + 48);
  code.copy(elf, headerSize + segmentHeaderSize);
  return elf;
}

/** A one-file tar archive (ustar), the input `docker import` takes. */
export function singleFileTar(name: string, content: Buffer, mode: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  header.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  header.write('0000000\0', 108, 'latin1'); // uid
  header.write('0000000\0', 116, 'latin1'); // gid
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write('00000000000\0', 136, 'latin1'); // mtime
  header.write('        ', 148, 'latin1'); // checksum counted as spaces
  header.write('0', 156, 'latin1'); // regular file
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'latin1');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

/** The holder program's architecture, the only one it is written for. */
export function slotsSupported(arch: string = process.arch): boolean {
  return arch === 'x64';
}

export interface SlotNetwork {
  name: string;
  gatewayIp: string;
}

/** How long the pool waits between attempts to get Docker's event stream back. */
export const EVENTS_RECONNECT: BackoffOptions = { baseMs: 250, capMs: 15_000 };

type EventStream = NodeJS.ReadableStream & { destroy(): void };

interface Slot {
  index: number;
  holderId: string;
  /** The run using it, or null when free. */
  runId: number | null;
}

/**
 * The holders of one site, one per concurrent run (more when runs found after a restart still
 * hold some). Not safe against two client processes for one site (neither is the rest of it).
 */
export class NetworkSlotPool {
  private readonly slots: Slot[] = [];
  /** The current event stream; null while it is being reconnected. */
  private events: EventStream | null = null;
  /** The reconnection under way after a loss, awaited by close(). */
  private reconnecting: Promise<void> | null = null;
  private readonly closing = new AbortController();
  /**
   * Holders whose run is stopped or being stopped: an event and a re-check may both report one
   * death. A holder id is never reused, and only dead holders enter, so this stays small.
   */
  private readonly stopping = new Set<string>();

  private constructor(
    private readonly docker: Docker,
    private readonly site: string,
    private readonly network: SlotNetwork,
    private readonly logger: Logger,
    private readonly reconnectBackoff: BackoffOptions,
  ) {}

  /**
   * Finds the site's holders again (after a restart), replaces dead or foreign ones, and starts
   * the missing ones up to `size`; a slot whose holder's namespace a run container still uses
   * stays taken by that run until its re-registration is released. null when slots cannot be
   * used here (another engine or another architecture): runs then join the network one by one.
   */
  static async open(options: {
    engine: ContainerEngine;
    site: string;
    network: SlotNetwork;
    size: number;
    logger: Logger;
  }): Promise<NetworkSlotPool | null> {
    const { engine, logger } = options;
    if (!(engine instanceof DockerEngine) || !slotsSupported()) {
      logger.info('network slots unavailable here: each run joins the gateway network itself', {
        arch: process.arch,
      });
      return null;
    }
    return NetworkSlotPool.openWith(engine.docker, options);
  }

  /**
   * {@link open} on a given Docker client, without the engine and architecture checks: the seam
   * where tests put a fake Docker (an event stream they can end, error or hold back).
   */
  static async openWith(
    docker: Docker,
    options: { site: string; network: SlotNetwork; size: number; logger: Logger; reconnect?: BackoffOptions },
  ): Promise<NetworkSlotPool> {
    const pool = new NetworkSlotPool(
      docker,
      options.site,
      options.network,
      options.logger,
      options.reconnect ?? EVENTS_RECONNECT,
    );
    await pool.ensureImage();
    await pool.adopt(options.size);
    // The first subscription must work (else the pool is not used); later losses are reconnected.
    pool.follow(await pool.subscribe());
    return pool;
  }

  /** Number of holders (free or taken). */
  get size(): number {
    return this.slots.length;
  }

  /** Holder ids in slot order (tests and benchmarks inspect them). */
  holderIds(): string[] {
    return this.slots.map((s) => s.holderId);
  }

  /**
   * Takes a free slot for `runId` (or the slot a container of that run already uses, after a
   * restart). Its holder is checked first and replaced when it is not running, so a run never
   * joins a dead namespace.
   */
  async acquire(runId: number): Promise<string> {
    let slot = this.slots.find((s) => s.runId === runId) ?? this.slots.find((s) => s.runId === null);
    if (!slot) {
      slot = { index: this.nextIndex(), holderId: '', runId };
      this.slots.push(slot);
      slot.holderId = await this.startHolder(slot.index).catch((e: unknown) => {
        this.slots.splice(this.slots.indexOf(slot!), 1);
        throw e;
      });
    }
    const taken = slot;
    taken.runId = runId;
    try {
      if (!(await this.isRunning(taken.holderId))) {
        this.logger.warn('network slot holder was not running: replacing it', { slot: taken.index });
        await this.removeContainer(taken.holderId);
        taken.holderId = await this.startHolder(taken.index);
      }
    } catch (e) {
      taken.runId = null;
      throw e;
    }
    return `container:${taken.holderId}`;
  }

  /**
   * Frees the slot of `runId` (one taken by acquire, or found taken by its container after a
   * restart). Call it only once the run's container has stopped: the next run joins the namespace.
   */
  release(runId: number): void {
    for (const slot of this.slots) if (slot.runId === runId) slot.runId = null;
  }

  /** The run holding each slot, in slot order (null: free). */
  takenBy(): (number | null)[] {
    return this.slots.map((s) => s.runId);
  }

  /**
   * Removes the holders, but for those whose namespace a container left running (or created) for
   * the next start still uses: they stay with it. A slot taken by a run whose container is gone
   * (removed by recovery as another registry's, say) is not kept for nothing.
   */
  async close(): Promise<void> {
    this.closing.abort();
    this.events?.destroy();
    this.events = null;
    await this.reconnecting;
    const inUse = this.slots.some((s) => s.runId !== null) ? await this.holdersInUse() : new Map<string, number>();
    for (const slot of [...this.slots]) {
      if (inUse.has(slot.holderId)) continue;
      await this.removeContainer(slot.holderId);
      this.slots.splice(this.slots.indexOf(slot), 1);
    }
  }

  /** Holder id → run id, for every run container of the site that is not over and joins a holder. */
  private async holdersInUse(): Promise<Map<string, number>> {
    const runs = await this.docker.listContainers({
      all: true,
      filters: { label: [`${CONTAINER_LABELS.managedBy}=pht-client`, `${CONTAINER_LABELS.site}=${this.site}`] },
    });
    const inUse = new Map<string, number>();
    for (const r of runs) {
      const mode = r.HostConfig?.NetworkMode ?? '';
      const runId = Number(r.Labels?.[CONTAINER_LABELS.runId]);
      if (!mode.startsWith('container:') || !Number.isSafeInteger(runId) || r.State === 'exited' || r.State === 'dead')
        continue;
      const named = mode.slice('container:'.length);
      // Docker may keep the id as given at create (the full id here) or a prefix of it.
      const holder = this.slots.find((s) => s.holderId === named || s.holderId.startsWith(named));
      inUse.set(holder?.holderId ?? named, runId);
    }
    return inUse;
  }

  /** Subscribes to the deaths of this site's holders. */
  private async subscribe(): Promise<EventStream> {
    return (await this.docker.getEvents({
      filters: {
        type: ['container'],
        event: ['die'],
        label: [`${CONTAINER_LABELS.managedBy}=${SLOT_LABELS.managedBy}`, `${CONTAINER_LABELS.site}=${this.site}`],
      },
    })) as EventStream;
  }

  /**
   * A holder that dies under a run took the run's network interface with it: the run is stopped
   * (it fails) rather than left running cut off, and the slot gets a new holder when next taken.
   * When the stream ends or fails, it is reconnected (see {@link reconnect}).
   */
  private follow(stream: EventStream): void {
    this.events = stream;
    let buffered = '';
    stream.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        let id: unknown;
        try {
          id = (JSON.parse(line) as { id?: unknown }).id;
        } catch {
          continue;
        }
        const slot = this.slots.find((s) => s.holderId === id);
        if (slot?.runId != null) void this.stopRunOf(slot.holderId, slot.index, slot.runId);
      }
    });
    // A lost stream says so once: 'error' (when there is one) comes before 'end' or 'close'.
    let lost = false;
    const onLoss = (e?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.events === stream) this.events = null;
      if (this.closing.signal.aborted) return;
      this.logger.warn('lost the Docker event stream: reconnecting, then re-checking the holders of taken slots', {
        ...(e === undefined ? {} : { error: coerceError(e).message }),
      });
      this.reconnecting = this.reconnect();
    };
    stream.on('error', onLoss);
    stream.on('end', () => onLoss());
    stream.on('close', () => onLoss());
  }

  /**
   * Gets the event stream back, retrying every failure with capped, jittered backoff until it
   * works or the pool closes: without it a holder's death would go unnoticed, so there is no
   * error after which giving up would be right (the attempts are logged at debug level only).
   * Subscribes first and re-checks second: a death after the subscription arrives as an event,
   * one during the gap is found by inspecting the holder.
   */
  private async reconnect(): Promise<void> {
    const signal = this.closing.signal;
    let stream: EventStream;
    try {
      stream = await retry(() => this.subscribe(), {
        ...this.reconnectBackoff,
        retryable: () => true,
        signal,
        onRetry: (e, attempt, delayMs) =>
          this.logger.debug('Docker event stream still unavailable', {
            attempt: attempt + 1,
            delayMs,
            error: coerceError(e).message,
          }),
      });
    } catch {
      return; // closed while waiting
    }
    if (signal.aborted) {
      stream.destroy();
      return;
    }
    this.logger.info('Docker event stream reconnected: re-checking the holders of taken slots', {
      taken: this.slots.filter((s) => s.runId !== null).length,
    });
    this.follow(stream);
    await this.recheckHolders();
  }

  /** Stops the run of every taken slot whose holder is no longer running. */
  private async recheckHolders(): Promise<void> {
    for (const slot of this.slots) {
      const { holderId, runId } = slot;
      if (runId === null) continue;
      let running: boolean;
      try {
        running = await this.isRunning(holderId);
      } catch (e) {
        // Docker went away again: that loss starts another reconnection and another re-check.
        this.logger.warn('could not re-check a network slot holder', {
          slot: slot.index,
          error: coerceError(e).message,
        });
        continue;
      }
      // The slot may have changed hands (or holder) while Docker answered.
      if (!running && slot.holderId === holderId && slot.runId === runId)
        await this.stopRunOf(holderId, slot.index, runId);
    }
  }

  private async stopRunOf(holderId: string, slot: number, runId: number): Promise<void> {
    if (this.stopping.has(holderId)) return;
    this.stopping.add(holderId);
    this.logger.error('network slot holder died during a run: stopping the run', { slot, runId });
    try {
      const containers = await this.docker.listContainers({
        filters: {
          label: [
            `${CONTAINER_LABELS.managedBy}=pht-client`,
            `${CONTAINER_LABELS.site}=${this.site}`,
            `${CONTAINER_LABELS.runId}=${runId}`,
          ],
        },
      });
      for (const c of containers) await this.docker.getContainer(c.Id).kill();
    } catch (e) {
      this.logger.error('could not stop the run of a dead network slot holder', {
        runId,
        error: coerceError(e).message,
      });
      // Not stopped: a later re-check may try again.
      this.stopping.delete(holderId);
    }
  }

  private nextIndex(): number {
    let i = 0;
    while (this.slots.some((s) => s.index === i)) i += 1;
    return i;
  }

  private async ensureImage(): Promise<void> {
    try {
      await this.docker.getImage(HOLDER_IMAGE).inspect();
      return;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    }
    const [repo, tag] = HOLDER_IMAGE.split(':') as [string, string];
    const tar = singleFileTar('holder', holderProgram(), 0o555);
    const stream = await this.docker.importImage(
      // dockerode sends a stream or buffer as the request body of POST /images/create?fromSrc=-.
      tar as unknown as string,
      { repo, tag },
    );
    await new Promise<void>((resolve, reject) =>
      this.docker.modem.followProgress(stream, (err: unknown) => (err ? reject(coerceError(err)) : resolve())),
    );
    this.logger.info('network slot holder image imported', { image: HOLDER_IMAGE });
  }

  private async adopt(size: number): Promise<void> {
    const found = await this.docker.listContainers({
      all: true,
      filters: {
        label: [`${CONTAINER_LABELS.managedBy}=${SLOT_LABELS.managedBy}`, `${CONTAINER_LABELS.site}=${this.site}`],
      },
    });
    // Which holders' namespaces run containers of this site still use (found after a restart).
    const inUse = await this.holdersInUse();
    for (const c of found) {
      const index = Number(c.Labels?.[SLOT_LABELS.slot]);
      const usable =
        c.State === 'running' &&
        c.Labels?.[SLOT_LABELS.network] === this.network.name &&
        Number.isSafeInteger(index) &&
        index >= 0 &&
        !this.slots.some((s) => s.index === index);
      const runId = [...inUse].find(([id]) => id === c.Id || c.Id.startsWith(id))?.[1] ?? null;
      if (usable) {
        this.slots.push({ index, holderId: c.Id, runId });
      } else if (runId === null) {
        await this.removeContainer(c.Id);
      }
      // A stopped holder a run container still names is left alone: removing it would not give
      // that run its network back, and the run's recovery ends it.
    }
    for (let i = this.slots.length; i < size; i++) {
      const index = this.nextIndex();
      this.slots.push({ index, holderId: await this.startHolder(index), runId: null });
    }
    this.slots.sort((a, b) => a.index - b.index);
    this.logger.info('network slots ready', {
      network: this.network.name,
      slots: this.slots.length,
      taken: this.slots.filter((s) => s.runId !== null).length,
    });
  }

  /** Creates and starts one holder: hardened like a run, smaller, on the gateway network. */
  private async startHolder(index: number): Promise<string> {
    const name = `pht-slot-${this.site}-${index}`.slice(0, 120);
    // A holder of a crashed client under the same name.
    await this.removeContainer(name);
    const container = await this.docker.createContainer({
      name,
      Image: HOLDER_IMAGE,
      Entrypoint: ['/holder'],
      Cmd: [],
      User: '65534:65534',
      Labels: {
        [CONTAINER_LABELS.managedBy]: SLOT_LABELS.managedBy,
        [CONTAINER_LABELS.site]: this.site,
        [SLOT_LABELS.slot]: String(index),
        [SLOT_LABELS.network]: this.network.name,
      },
      Tty: false,
      AttachStdin: false,
      OpenStdin: false,
      HostConfig: {
        NetworkMode: this.network.name,
        // Runs share this resolv.conf: the gateway IP, where the firewall drops DNS.
        Dns: [this.network.gatewayIp],
        DnsSearch: [],
        DnsOptions: ['ndots:0', 'timeout:1', 'attempts:1'],
        Privileged: false,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        Memory: 8 * 1024 * 1024,
        MemorySwap: 8 * 1024 * 1024,
        NanoCpus: 10_000_000,
        PidsLimit: 1,
        IpcMode: 'private',
        AutoRemove: false,
        RestartPolicy: { Name: 'no' },
        LogConfig: { Type: 'none', Config: {} },
      },
    });
    try {
      await container.start();
    } catch (e) {
      await this.removeContainer(container.id);
      throw e;
    }
    this.logger.debug('network slot holder started', { slot: index, holder: container.id.slice(0, 12) });
    return container.id;
  }

  private async isRunning(id: string): Promise<boolean> {
    try {
      return (await this.docker.getContainer(id).inspect()).State.Running;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return false;
      throw e;
    }
  }

  private async removeContainer(idOrName: string): Promise<void> {
    await this.docker
      .getContainer(idOrName)
      .remove({ force: true, v: true })
      .catch((e: unknown) => {
        if ((e as { statusCode?: number }).statusCode === 404) return;
        throw e;
      });
  }
}
