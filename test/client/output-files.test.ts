import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { folderUsage, openForUpload, scanOutput } from '../../client/output-files.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

function outputDir(): string {
  return makeTempDir('pht-output-');
}

const scan = (dir: string, maxFiles = 1000) => scanOutput(dir, { maxFiles });

describe('output folder scan', () => {
  it('lists regular files with relative names and sizes, nested folders included', async () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'result.json'), '{}');
    fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a', 'b', 'c.csv'), '1,2,3');
    const result = await scan(dir);
    expect(result.files.map((f) => [f.name, f.size])).toEqual([
      ['a/b/c.csv', 5],
      ['result.json', 2],
    ]);
    expect(result.totalBytes).toBe(7);
    expect(result.skipped).toEqual([]);
    expect(result.overflow).toBe(false);
  });

  it('never follows a symlink a container planted, to a file or a folder', async () => {
    const dir = outputDir();
    fs.symlinkSync('/etc/passwd', path.join(dir, 'passwd'));
    fs.symlinkSync('/etc', path.join(dir, 'etc'));
    const result = await scan(dir);
    expect(result.files).toEqual([]);
    expect(result.skipped).toEqual(['"etc": not a regular file (symlink)', '"passwd": not a regular file (symlink)']);
  });

  it('skips names that are not safe result paths', async () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'spaced name.txt'), 'x');
    fs.writeFileSync(path.join(dir, 'ok.txt'), 'x');
    const result = await scan(dir);
    expect(result.files.map((f) => f.name)).toEqual(['ok.txt']);
    expect(result.skipped[0]).toContain('spaced name.txt');
  });

  it('skips a path longer than the system allows (16 folders of 255 characters) with a reason, and sends the rest', async () => {
    const dir = outputDir();
    // Built from inside, folder by folder, as a container does: the host path ends up longer
    // than PATH_MAX, so any call that takes the whole path fails with ENAMETOOLONG.
    const segment = 'd'.repeat(255);
    let fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    for (let i = 0; i < 16; i++) {
      fs.mkdirSync(`/proc/self/fd/${fd}/${segment}`);
      const next = fs.openSync(`/proc/self/fd/${fd}/${segment}`, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      fs.closeSync(fd);
      fd = next;
    }
    fs.writeFileSync(`/proc/self/fd/${fd}/deep.txt`, 'deep');
    fs.closeSync(fd);
    expect(() => fs.lstatSync(path.join(dir, ...Array(16).fill(segment), 'deep.txt'))).toThrow(/ENAMETOOLONG/);
    fs.writeFileSync(path.join(dir, 'result.json'), '{}');
    const result = await scan(dir);
    expect(result.files.map((f) => f.name)).toEqual(['result.json']);
    expect(result.skippedCount).toBe(1);
    expect(result.skipped[0]).toMatch(/path longer than 1024 characters/);
  });

  it('never holds the event loop while walking a folder of many files', async () => {
    const dir = outputDir();
    for (let i = 0; i < 20_000; i++) fs.writeFileSync(path.join(dir, `f${i}`), '');
    // Other work (the gateway answering other runs) gets turns while the walk goes on.
    let turns = 0;
    let walking = true;
    const spin = () => {
      if (!walking) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const [scanned, measured] = await Promise.all([scan(dir, 30_000), folderUsage(dir, 30_000)]);
    walking = false;
    expect(scanned.files).toHaveLength(20_000);
    expect(measured.entries).toBe(20_000);
    expect(turns).toBeGreaterThan(100);
  });

  it('stops at the file limit instead of walking everything', async () => {
    const dir = outputDir();
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(dir, `f${i}`), '');
    const result = await scan(dir, 10);
    expect(result.overflow).toBe(true);
    expect(result.files).toHaveLength(10);
  });

  it('refuses to open a file swapped for a symlink after the scan, or a folder swapped on its path', async () => {
    const dir = outputDir();
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'r.txt'), 'x');
    fs.writeFileSync(path.join(dir, 'sub', 's.txt'), 'y');
    const { files } = await scan(dir);
    const r = files.find((f) => f.name === 'r.txt')!;
    const s = files.find((f) => f.name === 'sub/s.txt')!;
    fs.rmSync(path.join(dir, 'r.txt'));
    fs.symlinkSync('/etc/passwd', path.join(dir, 'r.txt'));
    await expect(openForUpload(dir, r)).rejects.toMatchObject({ code: 'ELOOP' });
    fs.rmSync(path.join(dir, 'sub'), { recursive: true });
    const elsewhere = outputDir();
    fs.writeFileSync(path.join(elsewhere, 's.txt'), 'secret');
    fs.symlinkSync(elsewhere, path.join(dir, 'sub'));
    await expect(openForUpload(dir, s)).rejects.toThrow(/ELOOP|ENOTDIR/);
  });

  it('measures a folder without following links', async () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'x'), Buffer.alloc(1000));
    fs.symlinkSync('/usr', path.join(dir, 'usr'));
    const usage = await folderUsage(dir, 1000);
    expect(usage.bytes).toBe(1000);
    expect(usage.entries).toBe(2);
  });
});
