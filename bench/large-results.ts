/**
 * Figure 5: a run whose output is one large file (2 GiB by default). Client and registry run as
 * separate processes; their RSS is sampled every 100 ms while the container writes, while the
 * client uploads, and while the SDK downloads to disk. Streaming means flat RSS.
 */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { workloadImage } from './lib/images.js';
import { readProc } from './lib/proc-stats.js';
import { stopChild } from './lib/registry-process.js';
import { REPO_ROOT, writeSection } from './lib/report.js';
import { rawSiteConfig, removeSiteLeftovers, uniqueSite } from './lib/site.js';
import { mib, table, wallMs } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld } from './lib/world.js';
import { sleep } from '../shared/abortable.js';

const GIB = 1024 ** 3;

interface Sample {
  at: number;
  client: number;
  registry: number;
  self: number;
}

async function main(args: BenchArgs): Promise<void> {
  const wanted = args.number('gib', 2) * GIB;
  // The file exists three times at once: the run's output folder, the registry's store, the download.
  const free = freeBytes(os.tmpdir());
  const margin = 2 * GIB;
  const size = Math.min(wanted, Math.floor((free - margin) / 3 / 1048576) * 1048576);
  if (size <= 0) throw new Error(`not enough free disk in ${os.tmpdir()}: ${mib(free)}`);
  const note =
    size < wanted
      ? `Scaled down from ${mib(wanted)} to ${mib(size)}: ${mib(free)} free in ${os.tmpdir()}, and the file is held three times.`
      : '';
  await removeSiteLeftovers();
  const image = await workloadImage();
  const site = uniqueSite('large');
  const world = await startWorld([site]);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-large-site-'));
  const downloadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-large-download-'));
  const configFile = path.join(workDir, 'client.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify(
      rawSiteConfig(world.registry.url, world.siteKeys.get(site)!, workDir, {
        network: { mode: 'none' },
        limits: { outputBytes: size + 1048576 },
      }),
    ),
  );
  const clientLog = path.join(workDir, 'client.log');
  const out = fs.openSync(clientLog, 'a');
  const client = spawn(process.execPath, [path.join(REPO_ROOT, 'client/index.js'), '--config', configFile], {
    stdio: ['ignore', out, out],
    env: { ...process.env, PHT_LOG_FORMAT: 'json' },
  });
  fs.closeSync(out);
  const samples: Sample[] = [];
  const timer = setInterval(() => {
    try {
      samples.push({
        at: wallMs(),
        client: readProc(client.pid!).rssBytes,
        registry: readProc(world.registry.pid).rssBytes,
        self: process.memoryUsage().rss,
      });
    } catch {
      /* a process ended: the run below reports it */
    }
  }, 100);
  let result: {
    posted: number;
    done: number;
    downloadStart: number;
    downloadEnd: number;
    audit: Record<string, number>;
    files: number;
  };
  try {
    await waitForLog(clientLog, 'site client starting', 20_000);
    await sleep(500); // baseline samples
    const posted = wallMs();
    console.log(`posting a task that writes ${mib(size)}`);
    const task = await world.researcher.createTask({ image, config: { bytes: size }, sites: [site] });
    const final = await world.researcher.waitForTask(task.id, { timeoutMs: 3_600_000 });
    const done = wallMs();
    const run = final.runs[0]!;
    if (final.status !== 'completed') throw new Error(`task ended ${final.status}: ${run.reason ?? ''}`);
    const downloadStart = wallMs();
    const saved = await world.researcher.saveRunFiles(run.id, downloadDir);
    const downloadEnd = wallMs();
    const big = saved.find((f) => f.name === 'data.bin');
    if (!big || big.size !== size) throw new Error(`download gave ${big?.size} bytes, expected ${size}`);
    result = {
      posted,
      done,
      downloadStart,
      downloadEnd,
      audit: auditTimes(path.join(workDir, 'audit.log')),
      files: saved.length,
    };
  } finally {
    clearInterval(timer);
    await stopChild(client, 15_000);
    await world.close();
    await removeSiteLeftovers(site);
    fs.rmSync(workDir, { recursive: true, force: true });
    fs.rmSync(downloadDir, { recursive: true, force: true });
  }
  const { audit } = result;
  const windows: [string, number, number][] = [
    ['before the task (baseline)', samples[0]!.at, result.posted],
    ['container writes the file', audit.run_started!, audit.run_ended!],
    ['client uploads (container removed, file streamed to the registry)', audit.run_ended!, audit.file_sent!],
    ['SDK downloads to disk (checksum verified)', result.downloadStart, result.downloadEnd],
  ];
  const peak = (from: number, to: number, key: keyof Omit<Sample, 'at'>) =>
    Math.max(...samples.filter((s) => s.at >= from && s.at <= to).map((s) => s[key]), 0);
  const rows = windows.map(([name, from, to]) => [
    name,
    ((to - from) / 1000).toFixed(1),
    mib(peak(from, to, 'client')),
    mib(peak(from, to, 'registry')),
    mib(peak(from, to, 'self')),
  ]);
  const uploadS = (audit.file_sent! - audit.run_ended!) / 1000;
  const downloadS = (result.downloadEnd - result.downloadStart) / 1000;
  const baseClient = peak(windows[0]![1], windows[0]![2], 'client');
  const baseRegistry = peak(windows[0]![1], windows[0]![2], 'registry');
  const growth = Math.max(
    peak(audit.run_started!, result.downloadEnd, 'client') - baseClient,
    peak(audit.run_started!, result.downloadEnd, 'registry') - baseRegistry,
  );
  const flat = growth < 64 * 1048576;
  const body = `
Target: client and registry RSS stay flat while a ${mib(size)} result moves (streaming, not
buffering). **${flat ? 'Met' : 'NOT met'}: the larger growth over the baseline was ${mib(growth)}.** ${note}

Registry (\`node master\`) and site client (\`node client --config …\`, network mode "none", the
output limit raised to fit the file) as separate processes; the workload container writes
${mib(size)} of zeros in 1 MiB chunks to /pht/output/data.bin. Upload: from the client's audit
event run_ended to file_sent for data.bin (the container's removal and the output scan are in it);
the registry hashes (SHA-256) and writes as it receives. Download: the SDK's saveRunFiles (streams
to a temporary file, checks size and SHA-256, renames). The third RSS column is the benchmark
process, where the SDK runs.

${table(['phase', 'seconds', 'client peak RSS', 'registry peak RSS', 'SDK (benchmark) peak RSS'], rows)}

Upload ${uploadS.toFixed(1)} s (${(size / 1048576 / uploadS).toFixed(0)} MiB/s); download ${downloadS.toFixed(1)} s
(${(size / 1048576 / downloadS).toFixed(0)} MiB/s); POST → researcher's wait returned ${((result.done - result.posted) / 1000).toFixed(1)} s.
`;
  console.log(body);
  writeSection({
    id: 'large-results',
    title: '5. Large results',
    command: `npm run bench:large -- --gib ${wanted / GIB}`,
    body,
  });
}

function freeBytes(dir: string): number {
  const line = execFileSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' }).trim().split('\n').at(-1)!;
  return Number(line.trim());
}

async function waitForLog(file: string, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes(text)) return;
    await sleep(50);
  }
  throw new Error(
    `"${text}" not in ${file} within ${timeoutMs} ms: ${fs.existsSync(file) ? fs.readFileSync(file, 'utf8').slice(-1500) : ''}`,
  );
}

/** Wall times (ms) of the audit log's events; for file_sent, the one of data.bin. */
function auditTimes(file: string): Record<string, number> {
  const times: Record<string, number> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const entry = JSON.parse(line) as { event?: string; timestamp: string; file?: string };
    if (!entry.event || (entry.event === 'file_sent' && entry.file !== 'data.bin')) continue;
    times[entry.event] = Date.parse(entry.timestamp);
  }
  return times;
}

runMain(
  {
    usage:
      'Usage: node dist/bench/large-results.js [--gib N]\n  Figure 5: memory while a run sends one large file; rewrites its section of BENCHMARKS.md.',
    options: { gib: 'value' },
  },
  main,
);
