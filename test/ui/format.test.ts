import { describe, expect, it } from 'vitest';
import {
  formatAgo,
  formatBytes,
  formatDuration,
  isSealedFile,
  isSealedText,
  shortDigest,
} from '../../ui/src/format.js';

describe('dashboard formatting', () => {
  it('shortens a digest to its algorithm and first 12 hex digits, whatever precedes it', () => {
    const hex = 'ab'.repeat(32);
    expect(shortDigest(`127.0.0.1:5050/pht/x@sha256:${hex}`)).toBe('sha256:abababababab…');
    expect(shortDigest(null)).toBe('—');
  });

  it('writes durations and sizes in units a person reads', () => {
    expect(formatDuration(340)).toBe('340 ms');
    expect(formatDuration(61_000)).toBe('1 min 1 s');
    expect(formatDuration(3_700_000)).toBe('1 h 1 min');
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(-5)).toBe('—');
    expect(formatBytes(14)).toBe('14 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatAgo(null)).toBe('never');
    expect(formatAgo(new Date(1_000_000 - 125_000).toISOString(), 1_000_000)).toBe('2 min ago');
  });

  it('recognises sealed envelopes (raw or base64) and sealed file names, and nothing else', () => {
    expect(isSealedText('PHTE\u0001…')).toBe(true);
    expect(isSealedText(Buffer.from('PHTE\u0001rest').toString('base64'))).toBe(true);
    expect(isSealedText('probe starting in mode ok\n')).toBe(false);
    expect(isSealedFile('result.json.sealed')).toBe(true);
    expect(isSealedFile('result.json')).toBe(false);
  });
});
