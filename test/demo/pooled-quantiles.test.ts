import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../../demo/synthetic-data.js';
import { ALGORITHMS_DIR, startDemoSites } from './run-algorithm.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

let sites: Awaited<ReturnType<typeof startDemoSites>>;
let dir: string;

beforeAll(async () => {
  sites = await startDemoSites();
  dir = makeTempDir('pht-pooled-');
});
afterAll(async () => {
  await sites?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs pooled-quantiles' main.js as its image would, with the contract's variables. */
async function run(name: string, config: unknown, endpoint = 'http://127.0.0.1:1/sparql') {
  const work = path.join(dir, name);
  fs.mkdirSync(path.join(work, 'output'), { recursive: true });
  fs.writeFileSync(path.join(work, 'config.json'), JSON.stringify(config));
  const env = {
    SPARQL_ENDPOINT: endpoint,
    PHT_CONFIG_FILE: path.join(work, 'config.json'),
    PHT_OUTPUT_DIR: path.join(work, 'output'),
    PHT_TTP_OUTBOX: path.join(work, 'output', 'ttp-outbox'),
  };
  const child = spawn(process.execPath, [path.join(ALGORITHMS_DIR, 'pooled-quantiles', 'main.js')], { env });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const read = (file: string) => JSON.parse(fs.readFileSync(path.join(work, 'output', file), 'utf8')) as unknown;
  return { code, stderr, read };
}

describe('pooled-quantiles algorithm', () => {
  it('sends each site’s ages to the outbox and pools them into the exact central quartiles', async () => {
    const files = [];
    for (const [site, endpoint] of sites.endpoints) {
      const sent = await run(site, { mode: 'send' }, endpoint);
      expect(sent.code, sent.stderr).toBe(0);
      const ages = sent.read('ttp-outbox/ages.json') as number[];
      expect(sent.read('result.json')).toEqual({ algorithm: 'pooled-quantiles', sent: ages.length });
      files.push({ sender: site, name: 'ages.json', data: JSON.stringify(ages) });
    }
    const pooled = await run('ttp', { mode: 'pool', ttpInbox: { taskId: 1, files } });
    expect(pooled.code, pooled.stderr).toBe(0);
    const all = [...generateDemoData().values()]
      .flat()
      .map((p) => p.age)
      .sort((a, b) => a - b);
    const at = (q: number) => {
      const pos = (all.length - 1) * q;
      return all[Math.floor(pos)]! + (all[Math.ceil(pos)]! - all[Math.floor(pos)]!) * (pos - Math.floor(pos));
    };
    expect(pooled.read('result.json')).toEqual({
      algorithm: 'pooled-quantiles',
      sites: [...sites.endpoints.keys()].sort(),
      n: 1950,
      q1: at(0.25),
      median: at(0.5),
      q3: at(0.75),
    });
  });

  it('refuses a pool run without an inbox', async () => {
    const r = await run('bad', { mode: 'pool' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run at the TTP/);
  });
});
