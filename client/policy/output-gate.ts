import type { Readable } from 'node:stream';
import type { OutputFile } from '../output-files.js';
import { smallCells } from './cell-counts.js';
import type { FilePreview } from './review-folder.js';
import type { OutputRules } from './site-policy.js';

/** Files larger than this are not read to look for small cells: such a result is held or refused. */
export const CELL_CHECK_MAX_BYTES = 16 * 1024 * 1024;
const PREVIEW_LINES = 10;
const PREVIEW_LINE_CHARS = 300;

export type OutputVerdict =
  { action: 'send' } | { action: 'hold'; reasons: string[] } | { action: 'refuse'; reason: string };

/** Reads at most `max` bytes of a stream. */
export async function readUpTo(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    chunks.push(b.subarray(0, max - n));
    n += Math.min(b.length, max - n);
    if (n >= max) break;
  }
  stream.destroy();
  return Buffer.concat(chunks);
}

function extension(name: string): string {
  const base = name.split('/').pop() ?? name;
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

/**
 * Checks a run's output against its rules, cheapest first: count, size and types refuse at once;
 * small cells suppress (refuse) or hold, as configured; manual review holds everything else.
 * `open` reads a file safely from the output folder (never following links).
 */
export async function checkOutput(
  rules: OutputRules,
  files: readonly OutputFile[],
  totalBytes: number,
  open: (file: OutputFile) => Promise<Readable>,
): Promise<OutputVerdict> {
  if (rules.maxFiles !== undefined && files.length > rules.maxFiles)
    return { action: 'refuse', reason: `output policy: ${files.length} files, at most ${rules.maxFiles} may leave` };
  if (rules.maxBytes !== undefined && totalBytes > rules.maxBytes)
    return { action: 'refuse', reason: `output policy: ${totalBytes} bytes, at most ${rules.maxBytes} may leave` };
  if (rules.allowedTypes) {
    const allowed = new Set(rules.allowedTypes);
    const bad = files.filter((f) => !allowed.has(extension(f.name)));
    if (bad.length)
      return {
        action: 'refuse',
        reason: `output policy: file type not allowed for ${bad.length} file(s) (${bad
          .slice(0, 3)
          .map((f) => f.name.slice(0, 80))
          .join(', ')}${bad.length > 3 ? ', …' : ''}); allowed: ${rules.allowedTypes.join(', ') || 'none'}`,
      };
  }
  const holds: string[] = [];
  if (rules.minCellCount !== undefined) {
    const min = rules.minCellCount;
    for (const file of files) {
      const ext = extension(file.name);
      if (!['csv', 'tsv', 'json'].includes(ext)) continue;
      const findings =
        file.size > CELL_CHECK_MAX_BYTES
          ? [`too large (${file.size} bytes) to check its counts`]
          : (smallCells(file.name, (await readUpTo(await open(file), CELL_CHECK_MAX_BYTES)).toString('utf8'), min) ??
            []);
      if (findings.length === 0) continue;
      const reason = `output policy: ${file.name.slice(0, 120)} has counts below ${min} (${findings.join('; ')})`;
      if ((rules.smallCells ?? 'suppress') === 'suppress')
        return { action: 'refuse', reason: `${reason}; results suppressed` };
      holds.push(reason);
    }
  }
  if (rules.review === 'manual') holds.push('the site reviews every result before it leaves (manual approval)');
  return holds.length ? { action: 'hold', reasons: holds } : { action: 'send' };
}

/** The officer's preview of each file: its first lines when it is text. */
export async function previewFiles(
  files: readonly OutputFile[],
  open: (file: OutputFile) => Promise<Readable>,
  maxFiles = 200,
): Promise<FilePreview[]> {
  const out: FilePreview[] = [];
  for (const file of files.slice(0, maxFiles)) {
    let head: string[] | null = null;
    try {
      const bytes = await readUpTo(await open(file), 8192);
      if (!bytes.includes(0))
        head = bytes
          .toString('utf8')
          .split('\n')
          .slice(0, PREVIEW_LINES)
          .map((l) => l.slice(0, PREVIEW_LINE_CHARS));
    } catch {
      head = null;
    }
    out.push({ name: file.name, size: file.size, head });
  }
  return out;
}
