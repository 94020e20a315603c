import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resultFilePathProblem } from '../shared/names.js';
import type { ResultFile } from '../shared/types.js';
import { PhtResponseError } from './errors.js';

/**
 * Where a result file goes under `dir`. The registry checks names when sites upload them, but a
 * researcher's disk should not depend on that: anything that could leave `dir` is refused here.
 */
export function localPathOf(dir: string, name: string, origin: { method: string; path: string }): string {
  const problem = resultFilePathProblem(name);
  if (problem)
    throw new PhtResponseError(
      `the registry listed a result file with an unsafe name ${JSON.stringify(name)}: ${problem}`,
      origin.method,
      origin.path,
    );
  const root = path.resolve(dir);
  const target = path.resolve(root, ...name.split('/'));
  // The name check above already keeps the file inside `dir`; this holds whatever it missed.
  const inside = path.relative(root, target);
  if (inside === '' || inside.startsWith('..') || path.isAbsolute(inside))
    throw new PhtResponseError(
      `the registry listed a result file ${JSON.stringify(name)} that would be written outside ${root}`,
      origin.method,
      origin.path,
    );
  return target;
}

/**
 * Streams `body` to `target` through a temporary file, checking size and SHA-256 against the
 * listing; the file appears under its name only when complete and verified.
 */
export async function writeVerified(
  body: Readable,
  target: string,
  expected: ResultFile,
  origin: { method: string; path: string },
): Promise<void> {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const partial = `${target}.${crypto.randomBytes(4).toString('hex')}.partial`;
  const hash = crypto.createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(body, meter, fs.createWriteStream(partial, { flags: 'wx' }));
    const sha256 = hash.digest('hex');
    if (size !== expected.size || sha256 !== expected.sha256) {
      throw new PhtResponseError(
        `result file ${expected.name} arrived with ${size} bytes and SHA-256 ${sha256}; the registry listed ${expected.size} bytes and ${expected.sha256}`,
        origin.method,
        origin.path,
      );
    }
    fs.renameSync(partial, target);
  } catch (e) {
    fs.rmSync(partial, { force: true });
    throw e;
  }
}
