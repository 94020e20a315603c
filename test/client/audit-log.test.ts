import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditChainWriter, auditFiles, createAuditLog, hashLine, verifyAuditChain } from '../../client/audit-log.js';
import { runOfficerCommand } from '../../client/commands/index.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

function tempLog(): string {
  return path.join(makeTempDir('pht-audit-'), 'audit.log');
}

function writeEntries(file: string, n: number, maxBytes?: number): void {
  const audit = createAuditLog(file, 'hospital-a', { maxBytes });
  for (let i = 1; i <= n; i++) audit.info('sparql query', { event: 'sparql_query', runId: 7, query: `SELECT ${i}` });
}

function lines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runOfficerCommand(argv, {}, { out: (t) => (out += t + '\n'), err: (t) => (err += t + '\n') });
  return { code, out, err };
}

describe('tamper-evident audit log', () => {
  it('chains every line to the one before it and verifies an untouched log', async () => {
    const file = tempLog();
    writeEntries(file, 5);
    const written = lines(file).map((l) => JSON.parse(l));
    expect(written.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(written[0].prev).toBe('0'.repeat(64));
    expect(written[1].prev).not.toBe(written[0].prev);
    expect(written[4]).toMatchObject({ site: 'hospital-a', event: 'sparql_query', runId: 7, query: 'SELECT 5' });
    expect(verifyAuditChain(file)).toMatchObject({ ok: true, lines: 5 });
    const r = await run(['audit', 'verify', '--log', file]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.out).toContain('audit log intact: 5 lines');
  });

  it('detects an edited line and names the line after it', async () => {
    const file = tempLog();
    writeEntries(file, 5);
    const l = lines(file);
    l[2] = l[2]!.replace('SELECT 3', 'SELECT 9');
    fs.writeFileSync(file, l.join('\n') + '\n');
    expect(verifyAuditChain(file)).toMatchObject({ ok: false, file, line: 4 });
    const r = await run(['audit', 'verify', '--log', file]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`BROKEN at ${file} line 4`);
  });

  it('detects a deleted line', () => {
    const file = tempLog();
    writeEntries(file, 5);
    const l = lines(file);
    l.splice(1, 1);
    fs.writeFileSync(file, l.join('\n') + '\n');
    expect(verifyAuditChain(file)).toMatchObject({ ok: false, line: 2 });
  });

  it('detects reordered lines', () => {
    const file = tempLog();
    writeEntries(file, 5);
    const l = lines(file);
    [l[2], l[3]] = [l[3]!, l[2]!];
    fs.writeFileSync(file, l.join('\n') + '\n');
    expect(verifyAuditChain(file)).toMatchObject({ ok: false, line: 3 });
  });

  it('detects a line whose seq and hash were both rewritten, and a removed first line', () => {
    const file = tempLog();
    writeEntries(file, 3);
    const l = lines(file);
    fs.writeFileSync(file, l.slice(1).join('\n') + '\n');
    expect(verifyAuditChain(file)).toMatchObject({ ok: false, line: 1 });
  });

  it('keeps the chain across a client restart', () => {
    const file = tempLog();
    writeEntries(file, 2);
    writeEntries(file, 2);
    expect(lines(file).map((x) => JSON.parse(x).seq)).toEqual([1, 2, 3, 4]);
    expect(verifyAuditChain(file)).toMatchObject({ ok: true, lines: 4 });
  });

  it('keeps the chain across rotation, before and after a restart, and detects a missing rotated file', () => {
    const file = tempLog();
    writeEntries(file, 10, 300);
    writeEntries(file, 10, 300);
    const files = auditFiles(file);
    expect(files.length).toBeGreaterThan(3);
    expect(files[files.length - 1]).toBe(file);
    const first = JSON.parse(lines(files[1]!)[0]!);
    const lastOfPrevious = lines(files[0]!).at(-1)!;
    expect(first.prev).toBe(hashLine(lastOfPrevious));
    expect(verifyAuditChain(file)).toMatchObject({ ok: true, lines: 20 });
    fs.rmSync(files[1]!);
    expect(verifyAuditChain(file)).toMatchObject({ ok: false, file: files[2], line: 1 });
  });

  it('sets a log written before the chain aside and starts a new chain', () => {
    const file = tempLog();
    fs.writeFileSync(file, '{"level":"info","message":"run received","runId":1}\n');
    const writer = new AuditChainWriter(file);
    writer.append({ message: 'first chained' });
    expect(verifyAuditChain(file)).toMatchObject({ ok: true, lines: 1 });
    expect(fs.readdirSync(path.dirname(file)).some((f) => f.startsWith('audit.log.pre-chain-'))).toBe(true);
  });

  it('refuses unknown options with a usage line and exit 2', async () => {
    const r = await run(['audit', 'verify', '--lgo', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown option --lgo');
    expect(r.err).toContain('Usage: node client audit');
  });
});

describe('node client audit', () => {
  function story(file: string): void {
    const audit = createAuditLog(file, 'hospital-a');
    const postedBy = { researcher: 'alice', organization: 'umc', project: 'diabetes' };
    audit.info('run received', { event: 'run_received', runId: 3, taskId: 2, image: 'img:1', attempt: 1, postedBy });
    audit.info('run policy', {
      event: 'run_policy',
      runId: 3,
      allowed: true,
      reason: null,
      digest: 'sha256:' + 'a'.repeat(64),
      signatures: [{ signer: 'rev-1', organization: 'umc', keyId: 'k1' }],
    });
    audit.info('image decision', { event: 'image_decision', runId: 3, allowed: true, reason: 'pattern' });
    audit.info('run started', { event: 'run_started', runId: 3, digest: 'img@sha256:' + 'a'.repeat(64) });
    audit.info('sparql query', { event: 'sparql_query', runId: 3, status: 200, query: 'SELECT * WHERE { ?s ?p ?o }' });
    audit.info('sparql query received', {
      event: 'sparql_query_received',
      runId: 3,
      queryId: 'q2',
      query: 'ASK { ?s ?p ?o }',
    });
    audit.info('sparql query', { event: 'sparql_query', outcome: 'refused', runId: 3, queryId: 'q2', status: 403 });
    audit.info('run ended', { event: 'run_ended', runId: 3, state: 'completed', exitCode: 0 });
    audit.info('output held', { event: 'output_held', runId: 3, reason: 'manual approval' });
    audit.info('run approved', {
      event: 'run_approved',
      runId: 3,
      by: 'officer',
      decidedAt: '2026-11-30T09:00:00.000Z',
    });
    audit.info('file sent', { event: 'file_sent', runId: 3, file: 'result.json', bytes: 661 });
    audit.info('result reported', { event: 'result_reported', runId: 3, state: 'completed', bytesSent: 661 });
    audit.info('run received', { event: 'run_received', runId: 4, taskId: 3, image: 'img:2', attempt: 1 });
  }

  it('answers who asked, what ran under whose signatures, what it read, what left and who approved', async () => {
    const file = tempLog();
    story(file);
    const r = await run(['audit', '--run', '3', '--log', file]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('asked by:    alice (organization umc, project diabetes)');
    expect(r.out).toContain(`digest ran:  img@sha256:${'a'.repeat(64)}`);
    expect(r.out).toContain('signed by:   rev-1 (umc)');
    expect(r.out).toContain('query (status 200): SELECT * WHERE { ?s ?p ?o }');
    expect(r.out).toContain('sparql:      2 queries');
    expect(r.out).toContain('refused (status 403): ASK { ?s ?p ?o }');
    expect(r.out).toContain('files sent:  1 files, 661 bytes');
    expect(r.out).toContain('review:      approved by officer at 2026-11-30T09:00:00.000Z');
    const json = JSON.parse((await run(['audit', '--run', '3', '--json', '--log', file])).out);
    expect(json).toMatchObject({ runId: 3, bytesSent: 661, review: { decision: 'approved', by: 'officer' } });
    const table = await run(['audit', '--log', file]);
    expect(table.out.split('\n')[0]).toMatch(/^RUN\s+TASK\s+RECEIVED/);
    expect(table.out).toMatch(/\n4\s+3\s/);
    const none = await run(['audit', '--since', '2999-01-01T00:00:00Z', '--json', '--log', file]);
    expect(JSON.parse(none.out)).toEqual([]);
    const recent = await run(['audit', '--since', '1h', '--json', '--log', file]);
    expect(JSON.parse(recent.out)).toHaveLength(2);
    expect((await run(['audit', '--run', '99', '--log', file])).code).toBe(1);
    expect((await run(['audit', '--since', 'yesterday', '--log', file])).code).toBe(2);
  });
});
