import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { commands } from '../../client/command-runner.js';
import {
  formatDiskImage,
  mountDiskImage,
  writableFoldersInBackground,
  type DiskImageSpec,
} from '../../client/disk-pool.js';
import type { PhtClient } from '../../sdk/index.js';
import { MachineProfile } from './machine-profile.js';
import { processTree, readProc } from './proc-stats.js';
import { measureProtocolAlone } from './protocol-alone.js';

/** CPU per iteration (ms) of a floor: what one kind of the train's work costs with nothing else around it. */
export interface CpuFloor {
  /** This process: the site client's side (and for the protocol, the researcher's SDK). */
  bench: number;
  registry: number;
  /** The client's command helper and the commands it ran (mkfs.ext4, mount, umount). */
  helper: number;
  /** The whole machine by process (perf record -a), when asked for. */
  machine: Map<string, number> | null;
}

/** CPU so far (ms) of this process's children but the registry and perf, with the children they reaped. */
function helperCpuMs(registryPid: number): number {
  let total = 0;
  for (const pid of processTree(process.pid)) {
    if (pid === process.pid || pid === registryPid) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'perf') continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat
        .slice(stat.lastIndexOf(')') + 2)
        .split(' ')
        .map(Number);
      total += ((f[11]! + f[12]! + f[13]! + f[14]!) * 1000) / 100; // USER_HZ is 100 on Linux
    } catch {
      /* ended meanwhile */
    }
  }
  return total;
}

async function measure(
  iterations: number,
  registryPid: number,
  named: Map<number, string> | null,
  work: () => Promise<void>,
): Promise<CpuFloor> {
  // The /proc scans for the helper's CPU stay outside the window (and outside perf's): before
  // this process's CPU is read at the start, after it is read at the end.
  const others = () => ({ registry: readProc(registryPid).cpuMs, helper: helperCpuMs(registryPid) });
  const own = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const before = others();
  const machine = named ? new MachineProfile() : null;
  await machine?.start();
  const from = { ...before, bench: own() };
  await work();
  const bench = own();
  const byProcess = named ? await machine!.stop(named) : null;
  const to = { ...others(), bench };
  const per = (a: number, b: number) => (b - a) / iterations;
  return {
    bench: per(from.bench, to.bench),
    registry: per(from.registry, to.registry),
    helper: per(from.helper, to.helper),
    machine: byProcess && new Map([...byProcess].map(([name, ms]) => [name, ms / iterations])),
  };
}

/**
 * The registry protocol of one run alone (long poll, start, log, result upload, finish, the
 * researcher's task creation and wait), from this process to the registry process, with no
 * container, disk or state save: what any train run costs the registry and the client's HTTP.
 */
export function protocolFloor(
  registry: { url: string; pid: number },
  siteKey: string,
  site: string,
  researcher: PhtClient,
  runs: number,
  named: Map<number, string> | null,
): Promise<CpuFloor> {
  const warmup = 5;
  return measure(runs + warmup, registry.pid, named, async () => {
    await measureProtocolAlone(registry.url, siteKey, site, researcher, runs, warmup);
  });
}

/**
 * A run's kernel-enforced disk alone, as the client makes and drops it: a new sparse image
 * formatted, loop-mounted, its writable folders laid out, written through (the pool's work),
 * then unmounted and deleted (the workspace's removal), one after the other.
 */
export async function diskFloor(
  spec: DiskImageSpec,
  registryPid: number,
  disks: number,
  named: Map<number, string> | null,
): Promise<CpuFloor> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-disk-floor-'));
  try {
    return await measure(disks, registryPid, named, async () => {
      for (let i = 0; i < disks; i++) {
        const folder = path.join(dir, String(i));
        fs.mkdirSync(folder);
        const image = path.join(folder, 'disk.img');
        await formatDiskImage(image, spec);
        const disk = path.join(folder, 'disk');
        fs.mkdirSync(disk);
        await mountDiskImage(image, disk);
        await writableFoldersInBackground(disk, spec);
        for (const file of [disk, image]) {
          const handle = await fs.promises.open(file, 'r');
          await handle.sync();
          await handle.close();
        }
        await commands.run('umount', [disk]);
        await fs.promises.rm(folder, { recursive: true, force: true });
      }
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
