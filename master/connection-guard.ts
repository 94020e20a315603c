import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/logger.js';

export interface ConnectionGuardLimits {
  /** Open connections one remote address may hold; the next one is closed at once. */
  connectionsPerAddress: number;
  /** A request body that sends nothing for this long has its connection closed. */
  bodyIdleTimeoutMs: number;
}

/**
 * Keeps a few clients from holding every connection the registry allows (found by an attack:
 * 25 sockets announcing 1 MB bodies, refused with 401 but kept open while their bodies trickled
 * in, starved a registry configured for 20 connections):
 *
 * - one remote address holds at most `connectionsPerAddress` connections;
 * - a request body that goes quiet for `bodyIdleTimeoutMs` loses its connection;
 * - a response sent before its request body was read in full (any early refusal) ends the
 *   connection instead of keeping it alive to drain a body nobody wants.
 */
export function guardConnections(server: http.Server, limits: ConnectionGuardLimits, logger: Logger): void {
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const open = perAddress.get(address) ?? 0;
    if (open >= limits.connectionsPerAddress) {
      logger.debug('connection refused: too many from one address', { address, open });
      socket.destroy();
      return;
    }
    perAddress.set(address, open + 1);
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
  });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    const bodyExpected =
      req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (bodyExpected) {
      // Node's server destroys a socket whose timeout nobody handles; this handler decides
      // instead: a body still incomplete after the quiet period ends the connection, a complete
      // one only means the handler is slow (a long poll), which is not the client's fault.
      socket.setTimeout(limits.bodyIdleTimeoutMs);
      res.on('timeout', () => {
        if (req.complete) socket.setTimeout(0);
        else {
          logger.debug('request body idle too long: connection closed', { method: req.method, path: req.url });
          socket.destroy();
        }
      });
      // Once the response is sent, Node's keep-alive timeout owns the socket's timer.
      req.once('end', () => {
        if (!res.writableFinished) socket.setTimeout(0);
      });
    }
    res.once('finish', () => {
      // Answered before the body arrived: do not keep the connection to read (or wait for) the rest.
      if (!req.complete && !socket.destroyed) socket.destroySoon();
    });
  });
}
