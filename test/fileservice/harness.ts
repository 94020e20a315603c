/** A real file service on an ephemeral port in a temp dir, with its log lines observable. */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { compileFileServiceConfig, type FileServiceConfig } from '../../fileservice/config.js';
import { startFileService, type RunningFileService } from '../../fileservice/server.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { fileServiceConfigSchema } from '../../fileservice/config.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

export interface LogLine {
  level: string;
  message: string;
  [k: string]: unknown;
}

export interface TestFileService {
  service: RunningFileService;
  config: FileServiceConfig;
  dataDir: string;
  lines: LogLine[];
  /** Emits 'line' for every log line. */
  log: EventEmitter;
  sender(name: string): string;
  reader(name: string): string;
  close(): Promise<void>;
  /** Files on disk, stored and temporary. */
  diskFiles(): { stored: string[]; tmp: string[] };
}

export async function startTestFileService(raw: Record<string, unknown> = {}): Promise<TestFileService> {
  // A caller's data dir (e.g. on a small tmpfs) is used as given, and removed on close like ours.
  const dataDir = typeof raw.dataDir === 'string' ? raw.dataDir : makeTempDir('pht-fs-');
  const config = compileFileServiceConfig(
    loadRawConfig({
      file: null,
      fileRequired: false,
      schema: fileServiceConfigSchema,
      env: {},
      envOverrides: [],
      flagOverrides: { port: 0, host: '127.0.0.1', dataDir, ...raw },
    }),
  );
  const lines: LogLine[] = [];
  const log = new EventEmitter();
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (!l) continue;
        const line = JSON.parse(l) as LogLine;
        lines.push(line);
        log.emit('line', line);
      }
      cb();
    },
  });
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream: sink })],
  });
  const service = await startFileService(config, logger);
  return {
    service,
    config,
    dataDir,
    lines,
    log,
    sender: (name) => service.store.createPrincipal('sender', name),
    reader: (name) => service.store.createPrincipal('reader', name),
    async close() {
      await service.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
    diskFiles: () => ({
      stored: fs.readdirSync(path.join(dataDir, 'files')),
      tmp: fs.readdirSync(path.join(dataDir, 'files-tmp')),
    }),
  };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json(): any;
}

/** An HTTP request with the path sent exactly as given (no URL normalisation). */
export function request(
  base: string,
  method: string,
  rawPath: string,
  options: { key?: string; body?: Buffer | string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path: rawPath,
        headers: {
          ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
          ...(options.body !== undefined && !options.headers?.['transfer-encoding']
            ? { 'content-length': String(Buffer.byteLength(options.body)) }
            : {}),
          ...options.headers,
        },
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body.toString('utf8')),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** Sends a request head announcing `declared` bytes, then only `sent` bytes, then closes the socket. */
export function truncatedUpload(
  base: string,
  rawPath: string,
  key: string,
  declared: number,
  sent: number,
): Promise<void> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        `PUT ${rawPath} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${declared}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(sent, 0x61), () => socket.end(() => resolve()));
    });
    socket.on('error', reject);
  });
}
