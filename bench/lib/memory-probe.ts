/**
 * Preloaded into a process under measurement (`node --expose-gc --require …/memory-probe.js`):
 * on SIGUSR2 it collects garbage and writes the process's memory figures as JSON to the file named
 * by PHT_MEMORY_PROBE_FILE, so a benchmark can tell the JS heap from the rest of the resident set.
 */
import fs from 'node:fs';
import v8 from 'node:v8';

export interface MemoryFigures {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** C++ memory tied to JS objects (Buffers and ArrayBuffers included). */
  externalBytes: number;
  /** Memory V8 allocated outside its heap (its own bookkeeping). */
  mallocedBytes: number;
}

/** Collects garbage (when exposed) and measures. */
export function measureMemory(): MemoryFigures {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  return {
    rssBytes: usage.rss,
    heapUsedBytes: usage.heapUsed,
    heapTotalBytes: usage.heapTotal,
    externalBytes: usage.external,
    mallocedBytes: v8.getHeapStatistics().malloced_memory,
  };
}

const target = process.env.PHT_MEMORY_PROBE_FILE;
if (target) {
  process.on('SIGUSR2', () => {
    // Written then renamed: the reader never sees half a file.
    fs.writeFileSync(`${target}.tmp`, JSON.stringify(measureMemory()));
    fs.renameSync(`${target}.tmp`, target);
  });
}
