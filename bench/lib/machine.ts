import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

/** What a figure was measured on; printed with every section of BENCHMARKS.md. */
export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  docker: string;
  node: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  let docker = 'unknown';
  try {
    // Debian's client matches the engine; another docker may come first on PATH.
    docker = execFileSync(
      '/usr/bin/docker',
      ['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})'],
      { encoding: 'utf8' },
    ).trim();
  } catch {
    /* no engine: the figure will say so when it fails */
  }
  let cgroup = '';
  try {
    cgroup = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? ', cgroup v2' : ', cgroup v1';
  } catch {
    /* unknown */
  }
  return {
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.release()}${cgroup}`,
    docker,
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, kernel ${m.kernel}, Docker ${m.docker}, Node ${m.node}`;
}
