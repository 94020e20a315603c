import fs from 'node:fs';
import net from 'node:net';

/**
 * A loopback port nobody listens on now, chosen below the kernel's ephemeral range. A server the
 * tests stop and start again on the same port (PostgreSQL in a drill, a registry SIGKILLed in a
 * loop) must get it back; a port from the ephemeral range can meanwhile become the local end of
 * any outgoing connection (thousands per drill), and the restart then fails with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralRangeStart();
  const first = Math.min(10_000, low - 1);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = first + Math.floor(Math.random() * (low - first));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port found between ${first} and ${low - 1}`);
}

function ephemeralRangeStart(): number {
  try {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && low > 1_100) return low;
  } catch {
    // Not Linux: the IANA range's start.
  }
  return 49_152;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
