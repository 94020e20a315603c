import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { Client, registry, world } from './helpers.js';

/** A raw TCP connection and what became of it. */
interface Probe {
  socket: net.Socket;
  received: () => string;
  /** Resolves when the connection is closed, whoever closed it. */
  closed: Promise<void>;
  /** Resolves once a response head has arrived or the connection is closed. */
  settled: Promise<void>;
}

function open(port: number, firstBytes: string, localAddress = '127.0.0.1'): Probe {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  let received = '';
  let settle: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      settle();
      resolve();
    }),
  );
  socket.on('connect', () => socket.write(firstBytes));
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
    if (received.includes('\r\n\r\n')) settle();
  });
  socket.on('error', () => undefined);
  return { socket, received: () => received, closed, settled };
}

/** A POST announcing a 1 MB body of which only the first bytes ever come. */
function trickle(path: string, auth: string | null): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n` +
    (auth ? `Authorization: Bearer ${auth}\r\n` : '') +
    '\r\n{"image": '
  );
}

const keepAliveGet = (path: string) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;

describe('connections held by unauthenticated or slow clients', () => {
  it('closes a connection refused before its body arrived, so 25 of them cannot starve a registry of 20 connections', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { maxConnections: 20 } } });
    const attackers = Array.from({ length: 25 }, () => open(w.reg.port, trickle('/api/v1/tasks', null)));
    // Each was answered (401) or dropped by the connection limit.
    await Promise.all(attackers.map((p) => p.settled));
    const answered = attackers.filter((p) => p.received().startsWith('HTTP/1.1 401'));
    expect(answered.length).toBeGreaterThan(0);
    for (const p of answered) expect(p.received()).toMatch(/\r\nConnection: close\r\n/i);
    // The registry let go of every one of them: nothing is left holding a connection slot.
    await Promise.all(attackers.map((p) => p.closed));

    // A legitimate researcher is still served.
    await w.researcher.get('/api/v1/me').expect(200);
    const task = await w.researcher.createTask();
    expect(task.runs).toHaveLength(1);
  });

  it('closes the connection of an authenticated request whose body stops arriving', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { bodyIdleTimeout: '200ms' } } });
    const quiet = open(w.reg.port, trickle('/api/v1/tasks', w.researcher.key));
    await quiet.closed;
    // Closed without an answer: the body never came, so there was nothing to answer.
    expect(quiet.received()).toBe('');
    await w.researcher.get('/api/v1/me').expect(200);
    expect((await w.admin.get('/api/v1/tasks').expect(200)).body.total).toBe(0);
  });

  it('limits the connections one address may hold and still serves other addresses', async () => {
    const r = await registry({ limits: { connectionsPerAddress: 3 } });
    // Three kept-alive connections from 127.0.0.2, each answered once so the registry has counted it.
    const held = Array.from({ length: 3 }, () => open(r.port, keepAliveGet('/healthz'), '127.0.0.2'));
    await Promise.all(held.map((p) => p.settled));
    for (const p of held) expect(p.received()).toMatch(/^HTTP\/1\.1 200/);
    const extra = open(r.port, keepAliveGet('/healthz'), '127.0.0.2');
    await extra.closed;
    expect(extra.received()).toBe('');
    // Another address is unaffected.
    await new Client(r.url, null).get('/healthz').expect(200);
    for (const p of held) p.socket.destroy();
    await Promise.all(held.map((p) => p.closed));
  });
});
