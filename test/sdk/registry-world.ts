import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PhtClient } from '../../sdk/index.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { SiteDouble } from './site-double.js';

/** A real registry with one researcher and two sites, the way most SDK and CLI tests need it. */
export interface RegistryWorld {
  registry: TestRegistry;
  token: string;
  client: PhtClient;
  siteA: SiteDouble;
  siteB: SiteDouble;
  close(): Promise<void>;
}

export async function startWorld(): Promise<RegistryWorld> {
  const registry = await startTestRegistry();
  const token = await registry.createUser('alice');
  const siteA = new SiteDouble(registry.url, 'site-a', await registry.createSite('site-a'));
  const siteB = new SiteDouble(registry.url, 'site-b', await registry.createSite('site-b'));
  const client = new PhtClient({ url: registry.url, token });
  return {
    registry,
    token,
    client,
    siteA,
    siteB,
    async close() {
      await client.close();
      await registry.destroy();
    },
  };
}

/** A loopback port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A server that answers every request with `handler`, for registries that misbehave. */
export async function startFakeServer(handler: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export const IMAGE = '127.0.0.1:5050/pht/count:1';
