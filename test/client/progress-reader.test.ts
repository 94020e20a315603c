import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseProgressLine, ProgressReader } from '../../client/progress-reader.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

describe('progress file', () => {
  it('returns the newest valid report written since the last read', async () => {
    const file = path.join(makeTempDir('pht-progress-'), 'progress.jsonl');
    const reader = new ProgressReader(file);
    expect(await reader.readLatest()).toBeNull();
    fs.appendFileSync(file, '{"current":1,"total":10}\n{"current":2,"total":10,"message":"two"}\n');
    expect(await reader.readLatest()).toEqual({ current: 2, total: 10, message: 'two' });
    expect(await reader.readLatest()).toBeNull();
    fs.appendFileSync(file, '{"current":3,');
    expect(await reader.readLatest()).toBeNull();
    fs.appendFileSync(file, '"total":10}\n');
    expect(await reader.readLatest()).toEqual({ current: 3, total: 10 });
  });

  it('ignores lines that are not valid progress reports', () => {
    expect(parseProgressLine('not json')).toBeNull();
    expect(parseProgressLine('{"current":-1}')).toBeNull();
    expect(parseProgressLine('{"current":1,"evil":true}')).toBeNull();
    expect(parseProgressLine('{"current":1,"message":' + JSON.stringify('x'.repeat(5000)) + '}')).toBeNull();
    expect(parseProgressLine('[1,2]')).toBeNull();
    expect(parseProgressLine('{"current":5,"total":null,"message":null}')).toEqual({
      current: 5,
      total: null,
      message: null,
    });
  });

  it('does not follow a symlink in place of the progress file', async () => {
    const dir = makeTempDir('pht-progress-');
    const secret = path.join(dir, 'secret');
    fs.writeFileSync(secret, '{"current":42}\n');
    fs.symlinkSync(secret, path.join(dir, 'progress.jsonl'));
    expect(await new ProgressReader(path.join(dir, 'progress.jsonl')).readLatest()).toBeNull();
  });

  it('stops reading a progress file beyond its cap and says so', async () => {
    const file = path.join(makeTempDir('pht-progress-'), 'progress.jsonl');
    const reader = new ProgressReader(file, 1024);
    fs.writeFileSync(file, '{"current":1}\n');
    expect(await reader.readLatest()).toEqual({ current: 1 });
    expect(reader.exceeded).toBe(false);
    fs.appendFileSync(file, 'x'.repeat(2000) + '\n{"current":2}\n');
    expect(await reader.readLatest()).toBeNull();
    expect(reader.exceeded).toBe(true);
  });
});
