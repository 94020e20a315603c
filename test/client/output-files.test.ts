import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { folderBytes, openForUpload, scanOutput } from '../../client/output-files.js';

function outputDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pht-output-'));
}

describe('output folder scan', () => {
  it('lists regular files with relative names and sizes, nested folders included', () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'result.json'), '{}');
    fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a', 'b', 'c.csv'), '1,2,3');
    const scan = scanOutput(dir);
    expect(scan.files.map((f) => [f.name, f.size])).toEqual([
      ['a/b/c.csv', 5],
      ['result.json', 2],
    ]);
    expect(scan.totalBytes).toBe(7);
    expect(scan.skipped).toEqual([]);
  });

  it('never follows a symlink a container planted, to a file or a folder', () => {
    const dir = outputDir();
    fs.symlinkSync('/etc/passwd', path.join(dir, 'passwd'));
    fs.symlinkSync('/etc', path.join(dir, 'etc'));
    const scan = scanOutput(dir);
    expect(scan.files).toEqual([]);
    expect(scan.skipped).toEqual(['etc: not a regular file (symlink)', 'passwd: not a regular file (symlink)']);
  });

  it('skips names that are not safe result paths', () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'spaced name.txt'), 'x');
    fs.writeFileSync(path.join(dir, 'ok.txt'), 'x');
    const scan = scanOutput(dir);
    expect(scan.files.map((f) => f.name)).toEqual(['ok.txt']);
    expect(scan.skipped[0]).toContain('spaced name.txt');
  });

  it('refuses to open a file swapped for a symlink after the scan', () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'r.txt'), 'x');
    const [file] = scanOutput(dir).files;
    fs.rmSync(file!.absolutePath);
    fs.symlinkSync('/etc/passwd', file!.absolutePath);
    expect(() => openForUpload(file!)).toThrow(/ELOOP/);
  });

  it('measures a folder without following links', () => {
    const dir = outputDir();
    fs.writeFileSync(path.join(dir, 'x'), Buffer.alloc(1000));
    fs.symlinkSync('/usr', path.join(dir, 'usr'));
    expect(folderBytes(dir)).toBeLessThan(1100);
    expect(folderBytes(dir)).toBeGreaterThanOrEqual(1000);
  });
});
