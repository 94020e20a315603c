import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startTestFileService, type TestFileService } from '../../fileservice/harness.js';
import { makeTempDir } from '../../helpers/temp-dirs.js';

/**
 * Fault drill: a TTP's file service whose data directory sits on an 8 MB tmpfs that fills up. An
 * upload that does not fit is answered 507 storage_full (as its OpenAPI document says), leaves no
 * partial file behind, the service keeps answering readers, and the same upload succeeds once
 * space is back.
 */

const MB = 1024 * 1024;

/** Why a tmpfs cannot be mounted here (the drill is skipped then), or null. */
function tmpfsMountProblem(): string | null {
  if (process.platform !== 'linux') return `mounting a tmpfs needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  return null;
}
const mountProblem = tmpfsMountProblem();
if (mountProblem) console.warn(`file service disk-full drill skipped: ${mountProblem}`);

describe.skipIf(mountProblem !== null)('file service with a full disk', () => {
  let mountPoint: string;
  let fsvc: TestFileService;
  let sender: string;
  let reader: string;
  let ballast: string;

  beforeAll(async () => {
    mountPoint = makeTempDir('pht-drill-fs-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { stdio: 'pipe' });
    // A folder inside the mount: the harness removes its data dir on close, a mount point cannot go.
    fsvc = await startTestFileService({ dataDir: path.join(mountPoint, 'data') });
    sender = fsvc.sender('hospital-a');
    reader = fsvc.reader('ttp-worker');
    ballast = path.join(mountPoint, 'ballast');
  });

  afterAll(async () => {
    await fsvc?.close();
    if (mountPoint) {
      execFileSync('umount', [mountPoint], { stdio: 'pipe' });
      fs.rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  it('refuses an upload that does not fit with 507 storage_full, keeps nothing of it, and takes it once space is back', async () => {
    const free = () => {
      const s = fs.statfsSync(mountPoint);
      return s.bavail * s.bsize;
    };
    // Leave about 1 MB free, then send 3 MB.
    fs.writeFileSync(ballast, Buffer.alloc(Math.max(0, free() - MB), 0x55));
    const body = Buffer.alloc(3 * MB, 0x41);
    const full = await request(fsvc.service.url, 'PUT', '/api/v1/tasks/7/files/big.bin', { key: sender, body });
    expect(full.status).toBe(507);
    expect(full.json()).toMatchObject({ code: 'storage_full' });
    expect(fsvc.diskFiles()).toEqual({ stored: [], tmp: [] });
    // Readers are still answered.
    const listed = await request(fsvc.service.url, 'GET', '/api/v1/tasks/7/files', { key: reader });
    expect(listed.status).toBe(200);
    expect(listed.json()).toEqual([]);

    fs.rmSync(ballast);
    const stored = await request(fsvc.service.url, 'PUT', '/api/v1/tasks/7/files/big.bin', { key: sender, body });
    expect(stored.status).toBe(201);
    expect(stored.json()).toMatchObject({ sender: 'hospital-a', name: 'big.bin', size: 3 * MB });
    expect(fsvc.lines.filter((l) => l.level === 'error')).toEqual([]);
  });
});
