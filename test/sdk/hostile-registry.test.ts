import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../sdk/cli/main.js';
import { PhtClient, PhtResponseError } from '../../sdk/index.js';
import { MAX_FILE_PATH_LENGTH, RESULT_FILE_PATH_PATTERN, resultFilePathProblem } from '../../shared/names.js';
import { startFakeServer } from './registry-world.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/**
 * A registry that lies: it answers like the real one but with the names, reasons and logs an
 * attacker chooses (a compromised registry, or anyone on a plain-HTTP path to it). The CLI must
 * write nothing outside --out and send no control sequence of theirs to the terminal.
 */

interface Lies {
  site?: string;
  taskName?: string;
  reason?: string;
  progressMessage?: string;
  files?: { name: string; bytes: Buffer }[];
  log?: string;
  errorMessage?: string;
}

function run(lies: Lies, status: 'completed' | 'running') {
  return {
    id: 1,
    taskId: 1,
    site: lies.site ?? 'site-a',
    status,
    attempt: 1,
    exitCode: status === 'completed' ? 0 : null,
    reason: lies.reason ?? null,
    digest: null,
    durationMs: 5,
    progress: lies.progressMessage ? { current: 1, total: 2, message: lies.progressMessage } : null,
    cancelRequested: false,
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: status === 'completed' ? '2026-01-01T00:00:01.000Z' : null,
    logBytes: Buffer.byteLength(lies.log ?? ''),
    logExpiredAt: null,
    filesExpiredAt: null,
  };
}

function task(lies: Lies, status: 'completed' | 'running' = 'completed') {
  return {
    id: 1,
    name: lies.taskName ?? 'count',
    image: '127.0.0.1:5050/pht/count:1',
    owner: 'alice',
    status,
    createdAt: '2026-01-01T00:00:00.000Z',
    runs: [run(lies, status)],
  };
}

function liar(lies: Lies): http.RequestListener {
  const files = lies.files ?? [];
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (lies.errorMessage) return send(404, { code: 'not_found', message: lies.errorMessage });
    const p = url.pathname;
    if (p === '/api/v1/tasks/1') return send(200, task(lies));
    if (p === '/api/v1/tasks/1/wait') return send(200, { ...task(lies), done: true });
    if (p === '/api/v1/tasks/1/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`event: task\ndata: ${JSON.stringify(task(lies))}\n\n`);
      return;
    }
    if (p === '/api/v1/tasks') return send(200, { tasks: [task(lies)], total: 1, limit: 50, offset: 0 });
    if (p === '/api/v1/sites') return send(200, [{ name: lies.site ?? 'site-a', enabled: true, lastSeen: null }]);
    if (p === '/api/v1/runs/1') return send(200, run(lies, 'completed'));
    if (p === '/api/v1/runs/1/log') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(lies.log ?? '');
      return;
    }
    if (p === '/api/v1/runs/1/files')
      return send(
        200,
        files.map((f) => ({
          name: f.name,
          size: f.bytes.length,
          sha256: crypto.createHash('sha256').update(f.bytes).digest('hex'),
        })),
      );
    const file = files.find((f) => p === `/api/v1/runs/1/files/${f.name.split('/').map(encodeURIComponent).join('/')}`);
    if (file) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(file.bytes);
      return;
    }
    send(404, { code: 'not_found', message: `no ${p}` });
  };
}

let tmp: string;
let close: (() => Promise<void>) | null = null;

beforeEach(() => {
  tmp = makeTempDir('pht-hostile-');
});

afterEach(async () => {
  await close?.();
  close = null;
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function pht(lies: Lies, args: string[], options: { tty?: boolean } = {}) {
  const fake = await startFakeServer(liar(lies));
  close = fake.close;
  let out = '';
  let err = '';
  const code = await main(args, {
    stdout: { write: (t: string) => (out += t), isTTY: options.tty ?? false, columns: 200 },
    stderr: { write: (t: string) => (err += t) },
    env: { PHT_URL: fake.url, PHT_TOKEN: 'pht_user_test_token' },
  });
  return { code, out, err };
}

/** Every regular file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)))
    .sort();
}

const HOSTILE_SITES: [string, string][] = [
  ['a parent-folder traversal', '../../x'],
  ['a bare parent folder', '..'],
  ['an absolute path', path.join(os.tmpdir(), 'pht-hostile-abs')],
  ['a nested path', 'site-a/../../y'],
  ['control characters', 'site\x1b[2J\x07'],
  ['an overlong name', 'a'.repeat(300)],
  ['an empty name', ''],
];

const HOSTILE_FILES: [string, string][] = [
  ['a parent-folder traversal', '../../evil.txt'],
  ['a traversal inside a folder', 'plots/../../../evil.txt'],
  ['an absolute path', '/tmp/pht-hostile-evil.txt'],
  ['control characters', 'result\x1b[2J.json'],
  ['a newline', 'a\nb.txt'],
  ['an overlong segment', `${'f'.repeat(300)}.txt`],
  ['an overlong path', Array.from({ length: 40 }, () => 'd').join('/') + '/x.txt'],
  ['an empty name', ''],
];

describe('pht task results against a registry that lies about names', () => {
  it.each(HOSTILE_SITES)('writes nothing anywhere when a run names its site with %s', async (_what, site) => {
    const out = path.join(tmp, 'a', 'b', 'out');
    const { code, err } = await pht({ site, files: [{ name: 'result.json', bytes: Buffer.from('{}') }] }, [
      'task',
      'results',
      '1',
      '--out',
      out,
    ]);
    expect(code).toBe(3);
    expect(err).toMatch(/\.site: must match pattern/);
    expect(err).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
    expect(filesUnder(tmp)).toEqual([]);
    expect(fs.existsSync(path.join(os.tmpdir(), 'pht-hostile-abs'))).toBe(false);
  });

  it.each(HOSTILE_FILES)('writes nothing anywhere when a result file is named with %s', async (_what, name) => {
    const out = path.join(tmp, 'a', 'b', 'out');
    const files = [
      { name: 'good.json', bytes: Buffer.from('{}') },
      { name, bytes: Buffer.from('pwned') },
    ];
    const { code, err } = await pht({ files }, ['task', 'results', '1', '--out', out]);
    expect(code).toBe(3);
    expect(err).toMatch(/answer\[1\]\.name: must match pattern/);
    expect(err).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
    expect(filesUnder(tmp)).toEqual([]);
    expect(fs.existsSync('/tmp/pht-hostile-evil.txt')).toBe(false);
  });

  it('saves the files of an honest answer (the fake registry itself works)', async () => {
    const out = path.join(tmp, 'out');
    const files = [
      { name: 'result.json', bytes: Buffer.from('{"n":1}') },
      { name: 'plots/h.csv', bytes: Buffer.from('x\n') },
    ];
    const { code } = await pht({ files }, ['task', 'results', '1', '--out', out]);
    expect(code).toBe(0);
    expect(filesUnder(tmp)).toEqual(['out/site-a/plots/h.csv', 'out/site-a/result.json']);
  });

  it('refuses the same names in the SDK: saveRunFiles and listSites throw PhtResponseError', async () => {
    const fake = await startFakeServer(
      liar({ site: '../x', files: [{ name: '../../evil.txt', bytes: Buffer.from('x') }] }),
    );
    close = fake.close;
    const client = new PhtClient({ url: fake.url, token: 'pht_user_test_token' });
    try {
      await expect(client.saveRunFiles(1, path.join(tmp, 'out'))).rejects.toThrow(PhtResponseError);
      await expect(client.listSites()).rejects.toThrow(/answer\[0\]\.name: must match pattern/);
      await expect(client.getTask(1)).rejects.toThrow(/answer\.runs\[0\]\.site: must match pattern/);
    } finally {
      await client.close();
    }
    expect(filesUnder(tmp)).toEqual([]);
  });
});

// Sequences that would clear the screen, set the window title, ring the bell, move the cursor,
// hide text (a C1 CSI) or reverse what the line appears to say (a bidi override).
const ATTACK = '\x1b[2J\x1b]0;pwned\x07\x1b[1A\x9b31m\u202eevil\r';
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/;

describe('pht shows registry-supplied text with its control characters escaped', () => {
  const lies: Lies = {
    taskName: `name${ATTACK}`,
    reason: `reason${ATTACK}`,
    log: `line one${ATTACK}\n\tindented\nlast`,
  };

  it('in task show, list and wait (plain output)', async () => {
    for (const args of [
      ['task', 'show', '1'],
      ['task', 'list'],
      ['task', 'wait', '1'],
    ]) {
      const { code, out } = await pht(lies, args);
      expect(code, args.join(' ')).toBe(0);
      expect(out, args.join(' ')).not.toMatch(RAW);
      expect(out, args.join(' ')).toContain('name\\x1b[2J\\x1b]0;pwned\\x07\\x1b[1A\\x9b31m\\u202eevil\\x0d');
      await close?.();
      close = null;
    }
  });

  it('in the progress view redrawn on a terminal, whose only escapes are its own cursor moves', async () => {
    const { code, out } = await pht({ ...lies, progressMessage: `msg${ATTACK}` }, ['task', 'wait', '1'], {
      tty: true,
    });
    expect(code).toBe(0);
    const withoutOwnMoves = out.replace(/\x1b\[[0-9]+A/g, '').replace(/\r\x1b\[2K/g, '');
    expect(withoutOwnMoves).not.toMatch(RAW);
    expect(out).toContain('reason\\x1b[2J');
  });

  it('in logs, keeping their newlines and tabs', async () => {
    const { code, out } = await pht(lies, ['task', 'logs', '1']);
    expect(code).toBe(0);
    expect(out).not.toMatch(RAW);
    expect(out).toContain('[site-a] line one\\x1b[2J\\x1b]0;pwned\\x07');
    expect(out).toContain('[site-a] \tindented\n[site-a] last\n');
  });

  it('in JSON output, where they become \\u escapes of the same text', async () => {
    const { code, out } = await pht(lies, ['task', 'show', '1', '--json']);
    expect(code).toBe(0);
    expect(out).not.toMatch(RAW);
    expect((JSON.parse(out) as { name: string }).name).toBe(`name${ATTACK}`);
  });

  it("in the registry's error messages", async () => {
    const plain = await pht({ errorMessage: `gone${ATTACK}` }, ['task', 'show', '1']);
    expect(plain.code).toBe(3);
    expect(plain.err).not.toMatch(RAW);
    expect(plain.err).toContain('gone\\x1b[2J');
    await close?.();
    close = null;
    const json = await pht({ errorMessage: `gone${ATTACK}` }, ['task', 'show', '1', '--json']);
    expect(json.err).not.toMatch(RAW);
    expect((JSON.parse(json.err) as { error: { message: string } }).error.message).toBe(`gone${ATTACK}`);
  });
});

describe('the wire pattern for result file names', () => {
  it('accepts exactly the names resultFilePathProblem accepts', () => {
    const pattern = new RegExp(RESULT_FILE_PATH_PATTERN, 'u');
    const segment = fc.oneof(
      fc.constantFrom('.', '..', '', 'a', '.a', 'a.', '...', 'x'.repeat(255), 'x'.repeat(256)),
      fc.stringMatching(/^[A-Za-z0-9._-]{0,8}$/),
      fc.string({ maxLength: 4 }),
    );
    const name = fc.array(segment, { minLength: 1, maxLength: 18 }).map((s) => s.join('/'));
    fc.assert(
      fc.property(name, (n) => {
        const fitsLength = n.length <= MAX_FILE_PATH_LENGTH;
        expect(pattern.test(n) && fitsLength, JSON.stringify(n)).toBe(resultFilePathProblem(n) === null);
      }),
      { numRuns: 5000 },
    );
  });
});
