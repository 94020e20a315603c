import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { commands } from '../../client/command-runner.js';
import { formatDiskImage, mountDiskImage } from '../../client/disk-pool.js';
import { summarize, wallMs, type Summary } from './stats.js';

/**
 * Floors for the train's own steps, measured in the benchmark's run: what the same kind of step
 * costs with nothing of the train's around it. Each is timed from the benchmark's process (where
 * the site client runs).
 */
export interface Floors {
  /** POST with a small JSON body to a bare node:http server in another process, undici keep-alive (the client's HTTP stack). */
  httpRoundTrip: Summary;
  /** A small file written, fsync'd and renamed in the work dir's filesystem (a state save). */
  durableWrite: Summary;
  /** A formatted image loop-mounted (noexec,nosuid,nodev) through the client's command helper. */
  loopMount: Summary;
  /** The same image unmounted through the helper. */
  unmount: Summary;
}

const SERVER = `const http = require('node:http');
const server = http.createServer((req, res) => { let n = 0; req.on('data', (d) => (n += d.length));
  req.on('end', () => { const body = JSON.stringify({ id: 1, status: 'running', bytes: n });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body); }); });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;

export async function measureFloors(samples = 200, mounts = 20): Promise<Floors> {
  const server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-floors-'));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      server.once('exit', (c) => reject(new Error(`floor server exited with ${c}`)));
    });
    const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });
    const http: number[] = [];
    for (let i = 0; i < samples + 10; i++) {
      const started = wallMs();
      const res = await request(`http://127.0.0.1:${port}/api/v1/site/runs/1/log`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
        body: JSON.stringify({ text: 'one line of log\n' }),
      });
      await res.body.json();
      if (i >= 10) http.push(wallMs() - started);
    }
    await agent.close();

    const writes: number[] = [];
    const file = path.join(dir, 'state.json');
    for (let i = 0; i < 50; i++) {
      const started = wallMs();
      const handle = await fs.promises.open(`${file}.tmp`, 'w', 0o600);
      await handle.writeFile(JSON.stringify({ i, phase: 'started', padding: 'x'.repeat(600) }));
      await handle.sync();
      await handle.close();
      await fs.promises.rename(`${file}.tmp`, file);
      writes.push(wallMs() - started);
    }

    const mountTimes: number[] = [];
    const unmountTimes: number[] = [];
    if (process.getuid?.() === 0) {
      const image = path.join(dir, 'disk.img');
      await formatDiskImage(image, { bytes: 64 << 20, inodes: 2000, uid: 65534, gid: 65534 });
      const mnt = path.join(dir, 'mnt');
      fs.mkdirSync(mnt);
      for (let i = 0; i < mounts; i++) {
        let started = wallMs();
        await mountDiskImage(image, mnt);
        mountTimes.push(wallMs() - started);
        started = wallMs();
        await commands.run('umount', [mnt]);
        unmountTimes.push(wallMs() - started);
      }
    }
    return {
      httpRoundTrip: summarize(http),
      durableWrite: summarize(writes),
      loopMount: summarize(mountTimes),
      unmount: summarize(unmountTimes),
    };
  } finally {
    server.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
