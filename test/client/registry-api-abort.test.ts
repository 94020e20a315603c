import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { SiteRegistryApi } from '../../client/registry-api.js';
import { isAbortError } from '../../shared/abortable.js';

/** A registry that accepts requests and never answers (a stalled upload, a hung proxy). */
async function stallingRegistry(): Promise<{ url: string; received: Promise<void>; close(): Promise<void> }> {
  let gotRequest!: () => void;
  const received = new Promise<void>((resolve) => (gotRequest = resolve));
  const server = http.createServer((req) => {
    req.resume();
    gotRequest();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('registry calls take an abort signal', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function stalled() {
    const registry = await stallingRegistry();
    const api = new SiteRegistryApi(registry.url, 'pht_site_test');
    cleanups.push(
      () => api.close(),
      () => registry.close(),
    );
    return { registry, api };
  }

  it('an upload the registry never answers ends as soon as the shutdown signal aborts', async () => {
    const { registry, api } = await stalled();
    const shutdown = new AbortController();
    // A body that never ends: the upload can only stop by being aborted.
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1024));
    const upload = api.uploadFile(1, 'result.bin', body, 10_000_000, shutdown.signal);
    await registry.received;
    shutdown.abort();
    expect(isAbortError(await upload.catch((e: unknown) => e))).toBe(true);
  });

  it.each(['start', 'finish', 'log', 'progress'] as const)(
    'a %s request the registry never answers ends when the signal aborts',
    async (call) => {
      const { registry, api } = await stalled();
      const shutdown = new AbortController();
      const pending =
        call === 'start'
          ? api.start(1, shutdown.signal)
          : call === 'finish'
            ? api.finish(1, { state: 'failed', reason: 'x' }, shutdown.signal)
            : call === 'log'
              ? api.log(1, 'line\n', shutdown.signal)
              : api.progress(1, { current: 1, total: 2 }, shutdown.signal);
      await registry.received;
      shutdown.abort();
      expect(isAbortError(await pending.catch((e: unknown) => e))).toBe(true);
    },
  );
});
