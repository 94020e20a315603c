import fs from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import type { Logger } from '../shared/logger.js';

/**
 * The site's own record of what it did for the consortium, as JSON lines: every run received,
 * every image decision and digest, start and end, every SPARQL query, every byte sent back.
 * It stays at the site; nothing in it is sent to the registry.
 */
export function createAuditLog(file: string, site: string): Logger {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return winston.createLogger({
    level: 'info',
    defaultMeta: { site },
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.File({ filename: file, options: { flags: 'a', mode: 0o600 } })],
  });
}
