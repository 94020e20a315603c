import type { Readable } from 'node:stream';
import { ERROR_CODES } from '../shared/error-codes.js';
import type { ResultFile } from '../shared/types.js';
import { RegistryError } from './errors.js';
import type { ResultFileStore } from './result-files.js';
import type { FileLimits, RegistryStore } from './store/registry-store.js';

/**
 * Stores one result file of a run, as one operation: refuse early what cannot succeed, stream the
 * bytes to disk within the room the run has, record them in a transaction that checks every
 * limit again, and remove whatever stored copy no run refers to afterwards, whatever happens.
 */
export async function storeResultFile(
  deps: { store: RegistryStore; files: ResultFileStore; limits: FileLimits },
  siteId: number,
  runId: number,
  name: string,
  body: Readable,
  declaredBytes: number | null,
): Promise<ResultFile> {
  const { store, files, limits } = deps;
  const { maxBytes } = await store.checkFileUpload(siteId, runId, name, limits);
  if (declaredBytes !== null && declaredBytes > maxBytes) {
    throw new RegistryError(
      413,
      ERROR_CODES.payloadTooLarge,
      `file is ${declaredBytes} bytes; at most ${maxBytes} more bytes are allowed for this run`,
    );
  }
  const stored = await files.receive(body, maxBytes);
  let unreferenced = [stored.storedAs];
  try {
    ({ unreferenced } = await store.recordFile(siteId, runId, { name, ...stored }, limits));
  } finally {
    for (const storedAs of unreferenced) files.remove(storedAs);
  }
  return { name, size: stored.size, sha256: stored.sha256 };
}
