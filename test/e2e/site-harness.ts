import crypto from 'node:crypto';
import { compileClientConfig, type ClientConfig } from '../../client/config.js';
import { SiteClient } from '../../client/site-client.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { clientConfigSchema } from '../../shared/config-schemas.js';
import { CONTAINER_LABELS } from '../../shared/container-contract.js';
import { createLogger, silentLogger, type Logger } from '../../shared/logger.js';
import type { Task, TaskWaitResult } from '../../shared/types.js';
import { docker, IMAGE_REGISTRY, removeContainersByLabel } from '../helpers/docker.js';
import type { TestRegistry } from '../helpers/registry-fixture.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

export const E2E_REPO = `${IMAGE_REGISTRY}/pht-e2e`;

export function uniqueSiteName(prefix = 'e2e'): string {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

export function testLogger(): Logger {
  return process.env.PHT_TEST_LOG ? createLogger({ level: 'debug', format: 'pretty' }) : silentLogger();
}

/** A client config as a site would write it, with test-friendly limits; `raw` overrides any field. */
export function clientConfig(
  registryUrl: string,
  apiKey: string,
  sparqlEndpoint: string,
  raw: Record<string, unknown> = {},
): ClientConfig {
  const workDir = makeTempDir('pht-client-');
  const validated = loadRawConfig({
    file: null,
    fileRequired: false,
    schema: clientConfigSchema,
    env: {},
    envOverrides: [],
    flagOverrides: {
      registryUrl,
      apiKey,
      sparqlEndpoint,
      allowedImages: [`${E2E_REPO.replace(/\./g, '\\.')}/.*`],
      workDir,
      poll: { longPollSeconds: 5, cancelCheck: '500ms', maxBackoff: '1s' },
      limits: { timeout: '60s', memoryMb: 256 },
      ...raw,
    },
  });
  return compileClientConfig(validated, null, workDir);
}

export async function startClient(config: ClientConfig, logger: Logger = testLogger()): Promise<SiteClient> {
  const client = new SiteClient({ config, logger });
  await client.start();
  return client;
}

/** Removes what a site left in Docker: containers and its gateway network. */
export async function cleanupSite(site: string): Promise<void> {
  await removeContainersByLabel(CONTAINER_LABELS.site, site);
  const networks = await docker().listNetworks({ filters: { label: [`${CONTAINER_LABELS.site}=${site}`] } });
  for (const n of networks)
    await docker()
      .getNetwork(n.Id)
      .remove()
      .catch(() => undefined);
}

export class Researcher {
  constructor(
    readonly registry: TestRegistry,
    readonly token: string,
  ) {}

  async call(method: string, route: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
    const res = await fetch(`${this.registry.url}/api/v1${route}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, text };
  }

  async post(image: string, config: unknown, sites: string[]): Promise<Task> {
    const res = await this.call('POST', '/tasks', { image, config, sites });
    if (res.status !== 201) throw new Error(`POST /tasks answered ${res.status}: ${res.text}`);
    return res.json as Task;
  }

  /** Waits (long polls) until every run of the task is final. */
  async waitDone(taskId: number, maxSeconds = 150): Promise<Task> {
    const until = Date.now() + maxSeconds * 1000;
    while (Date.now() < until) {
      const res = await this.call('GET', `/tasks/${taskId}/wait?timeout=20`);
      if (res.status !== 200) throw new Error(`wait answered ${res.status}: ${res.text}`);
      if ((res.json as TaskWaitResult).done) return res.json as Task;
    }
    throw new Error(`task ${taskId} did not finish within ${maxSeconds}s`);
  }

  /** Polls until some run of the task has reached `status` (for stepping into the middle of a run). */
  async waitForRunStatus(taskId: number, status: string, maxSeconds = 60): Promise<Task> {
    const until = Date.now() + maxSeconds * 1000;
    while (Date.now() < until) {
      const res = await this.call('GET', `/tasks/${taskId}`);
      if (res.json?.runs?.some((r: { status: string }) => r.status === status)) return res.json as Task;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no run of task ${taskId} reached ${status} within ${maxSeconds}s`);
  }

  async log(runId: number): Promise<string> {
    return (await this.call('GET', `/runs/${runId}/log`)).text;
  }

  async files(runId: number): Promise<{ name: string; size: number; sha256: string }[]> {
    return (await this.call('GET', `/runs/${runId}/files`)).json;
  }

  async file(runId: number, name: string): Promise<string> {
    return (await this.call('GET', `/runs/${runId}/files/${name}`)).text;
  }
}
