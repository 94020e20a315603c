import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { FinishReport, ProgressReport, RunAssignment, SiteRunView } from '../shared/types.js';
import { coerceError } from '../shared/errors.js';
import { isRetryableNetworkError, RegistryRefusedError, RegistryUnavailableError } from './errors.js';

/**
 * The site's side of the REST API. Every method either returns, throws RegistryRefusedError (4xx,
 * permanent) or RegistryUnavailableError (network, 5xx, 429: retry later). Response bodies are
 * checked for shape: a registry is trusted with the run, not with crashing the client.
 */
export class SiteRegistryApi {
  private readonly base: string;
  private readonly dispatcher: Agent;

  constructor(
    registryUrl: string,
    private readonly apiKey: string,
  ) {
    this.base = registryUrl.replace(/\/+$/, '') + '/api/v1/site';
    // Long polls hold a connection for up to a minute; bodies (uploads) may take long.
    this.dispatcher = new Agent({
      headersTimeout: 90_000,
      bodyTimeout: 0,
      connectTimeout: 10_000,
      keepAliveTimeout: 30_000,
    });
  }

  async me(signal?: AbortSignal): Promise<{ name: string }> {
    const body = await this.call('GET', '/me', undefined, signal);
    if (!isObject(body) || typeof body.name !== 'string')
      throw new RegistryUnavailableError('registry answered /me without a site name', null);
    return { name: body.name };
  }

  /** Claims the next run, waiting up to `waitSeconds` at the registry; null when there is none. */
  async claimNext(waitSeconds: number, signal?: AbortSignal): Promise<RunAssignment | null> {
    const body = await this.call('GET', `/runs/next?wait=${waitSeconds}`, undefined, signal);
    if (body === null) return null;
    if (
      !isObject(body) ||
      !isId(body.id) ||
      !isId(body.taskId) ||
      typeof body.image !== 'string' ||
      !Number.isInteger(body.attempt)
    ) {
      throw new RegistryUnavailableError('registry handed out a malformed run', null);
    }
    return body as unknown as RunAssignment;
  }

  async getRun(runId: number, signal?: AbortSignal): Promise<SiteRunView> {
    return asRunView(await this.call('GET', `/runs/${runId}`, undefined, signal));
  }

  async listUnfinishedRuns(signal?: AbortSignal): Promise<SiteRunView[]> {
    const body = await this.call('GET', '/runs', undefined, signal);
    if (!Array.isArray(body))
      throw new RegistryUnavailableError('registry answered /runs with something other than a list', null);
    return body.map(asRunView);
  }

  async start(runId: number): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/start`, {}));
  }

  async progress(runId: number, progress: ProgressReport): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/progress`, progress));
  }

  async log(runId: number, text: string): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/log`, { text }));
  }

  async finish(runId: number, report: FinishReport): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/finish`, report));
  }

  /** Streams one result file; `name` has been validated as a safe relative path. */
  async uploadFile(runId: number, name: string, body: Readable, size: number): Promise<void> {
    const path = name.split('/').map(encodeURIComponent).join('/');
    await this.call('PUT', `/runs/${runId}/files/${path}`, body, undefined, size);
  }

  /** Signatures stored at the registry for a digest; unchecked (the site's policy verifies them). */
  async listImageSignatures(digest: string): Promise<unknown[]> {
    const body = await this.call('GET', `/images/signatures?digest=${encodeURIComponent(digest)}`);
    if (!Array.isArray(body))
      throw new RegistryUnavailableError('registry answered /images/signatures with something other than a list', null);
    return body;
  }

  /** Tells the registry the run's results wait for the site officer (state awaiting_approval). */
  async awaitApproval(runId: number): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/await-approval`, {}));
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async call(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    rawSize?: number,
  ): Promise<unknown> {
    const raw = rawSize !== undefined;
    let response;
    try {
      response = await request(this.base + path, {
        method: method as 'GET',
        dispatcher: this.dispatcher,
        signal,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          ...(body !== undefined ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}),
          ...(raw ? { 'content-length': String(rawSize) } : {}),
        },
        body: body === undefined ? undefined : raw ? (body as Readable) : JSON.stringify(body),
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      const err = coerceError(e);
      if (isRetryableNetworkError(e) || err.name === 'SocketError' || err.name === 'ConnectTimeoutError') {
        throw new RegistryUnavailableError(`registry unreachable: ${err.message}`, null);
      }
      throw new RegistryUnavailableError(`registry request failed: ${err.message}`, null);
    }
    const text = await response.body.text().catch(() => '');
    const status = response.statusCode;
    if (status === 204) return null;
    if (status >= 500 || status === 429 || status === 408) {
      throw new RegistryUnavailableError(`registry answered ${status}: ${summarize(text)}`, status);
    }
    let parsed: unknown = null;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new RegistryUnavailableError(`registry answered ${status} with a body that is not JSON`, status);
      }
    }
    if (status >= 400) {
      const code = isObject(parsed) && typeof parsed.code === 'string' ? parsed.code : 'unknown';
      const message = isObject(parsed) && typeof parsed.message === 'string' ? parsed.message : `HTTP ${status}`;
      throw new RegistryRefusedError(status, code, message);
    }
    return parsed;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) > 0;
}

function asRunView(v: unknown): SiteRunView {
  if (
    !isObject(v) ||
    !isId(v.id) ||
    !isId(v.taskId) ||
    typeof v.status !== 'string' ||
    typeof v.cancelRequested !== 'boolean'
  ) {
    throw new RegistryUnavailableError('registry answered with a malformed run', null);
  }
  return v as unknown as SiteRunView;
}

function summarize(text: string): string {
  return text.length > 200 ? text.slice(0, 200) + '…' : text;
}
