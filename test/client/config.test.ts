import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadClientConfig } from '../../client/config.js';
import { ConfigError } from '../../shared/errors.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const ROOT = path.join(__dirname, '..', '..');

function writeConfig(value: unknown): string {
  const dir = makeTempDir('pht-config-');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

const minimal = {
  registryUrl: 'http://127.0.0.1:5000',
  apiKey: 'pht_site_abcdefgh',
  sparqlEndpoint: 'http://127.0.0.1:7878/sparql',
  allowedImages: ['127\\.0\\.0\\.1:5050/pht/.*'],
};

describe('client configuration', () => {
  it('loads config.example.json with every field documented and valid', () => {
    const config = loadClientConfig(path.join(ROOT, 'config.example.json'), {});
    expect(config.network.mode).toBe('gateway');
    expect(config.limits.timeoutMs).toBe(3_600_000);
    expect(config.poll.schedule).toEqual({ kind: 'interval', ms: 1000 });
    expect(config.allowlist.check('127.0.0.1:5050/myConsortium/deep/image:1').allowed).toBe(true);
    const example = JSON.parse(fs.readFileSync(path.join(ROOT, 'config.example.json'), 'utf8'));
    for (const key of Object.keys(example).filter((k) => !k.startsWith('//'))) {
      if (!['dockerSocket', 'logLevel'].includes(key))
        expect(example[`//${key}`], `comment for ${key}`).toBeTypeOf('string');
    }
  });

  it('fills defaults and resolves paths relative to the config file', () => {
    const file = writeConfig(minimal);
    const config = loadClientConfig(file, {});
    expect(config.pullPolicy).toBe('always');
    expect(config.containerUser).toBe('65534:65534');
    expect(config.workDir).toBe(path.join(path.dirname(file), 'pht-work'));
    expect(config.limits.memoryBytes).toBe(1024 * 1024 * 1024);
  });

  it('names the missing field and the file', () => {
    const { apiKey: _apiKey, ...rest } = minimal;
    const file = writeConfig(rest);
    expect(() => loadClientConfig(file, {})).toThrow(ConfigError);
    expect(() => loadClientConfig(file, {})).toThrow(new RegExp(`${file}[\\s\\S]*missing required field "apiKey"`));
  });

  it('names a field with a wrong type or an unknown field', () => {
    expect(() => loadClientConfig(writeConfig({ ...minimal, concurrency: 'two' }), {})).toThrow(
      /config\.concurrency: must be integer/,
    );
    expect(() => loadClientConfig(writeConfig({ ...minimal, limits: { memry: 1 } }), {})).toThrow(
      /config\.limits: unknown field "memry"/,
    );
    expect(() => loadClientConfig(writeConfig({ ...minimal, pullPolicy: 'sometimes' }), {})).toThrow(
      /config\.pullPolicy: must be one of/,
    );
  });

  it('refuses an invalid regular expression in the allowlist, naming the entry', () => {
    expect(() => loadClientConfig(writeConfig({ ...minimal, allowedImages: ['ok/.*', 'broken(['] }), {})).toThrow(
      /allowedImages: entry 1/,
    );
  });

  it('refuses a schedule that is neither a duration nor a cron expression', () => {
    expect(() => loadClientConfig(writeConfig({ ...minimal, poll: { schedule: 'whenever' } }), {})).toThrow(
      /poll\.schedule/,
    );
  });

  it('accepts a cron schedule', () => {
    expect(loadClientConfig(writeConfig({ ...minimal, poll: { schedule: '*/5 * * * *' } }), {}).poll.schedule).toEqual({
      kind: 'cron',
      expression: '*/5 * * * *',
    });
  });

  it('reports a file that is not JSON or does not exist', () => {
    expect(() => loadClientConfig(writeConfig('{ nope'), {})).toThrow(/is not valid JSON/);
    expect(() => loadClientConfig('/nonexistent/config.json', {})).toThrow(
      /cannot read config file \/nonexistent\/config.json/,
    );
  });

  it('takes environment overrides and validates them too', () => {
    const file = writeConfig(minimal);
    expect(loadClientConfig(file, { PHT_API_KEY: 'pht_site_fromenv1' }).apiKey).toBe('pht_site_fromenv1');
    expect(loadClientConfig(file, { PHT_ALLOWED_IMAGES: '["a/.*"]' }).allowlist.patterns).toEqual(['a/.*']);
    expect(() => loadClientConfig(file, { PHT_ALLOWED_IMAGES: 'not json' })).toThrow(/PHT_ALLOWED_IMAGES must be JSON/);
    expect(() => loadClientConfig(file, { PHT_REGISTRY_URL: 'ftp://x' })).toThrow(/config\.registryUrl/);
  });

  it('requires a network name in named mode', () => {
    expect(() => loadClientConfig(writeConfig({ ...minimal, network: { mode: 'named' } }), {})).toThrow(
      /network\.name is required/,
    );
  });
});
