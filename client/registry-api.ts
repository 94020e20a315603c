import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { FinishReport, ProgressReport, RunAssignment, SiteMe, SiteRunView } from '../shared/types.js';
import { coerceError } from '../shared/errors.js';
import { responseCheck } from '../shared/response-checks.js';
import { runAssignmentSchema, siteMeSchema, siteRunListSchema, siteRunViewSchema } from '../shared/schemas.js';
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
    const me = asSiteMe(await this.call('GET', '/me', undefined, signal), '/me');
    return { name: me.name };
  }

  /** Claims the next run, waiting up to `waitSeconds` at the registry; null when there is none. */
  async claimNext(waitSeconds: number, signal?: AbortSignal): Promise<RunAssignment | null> {
    const body = await this.call('GET', `/runs/next?wait=${waitSeconds}`, undefined, signal);
    if (body === null) return null;
    return asAssignment(body, '/runs/next');
  }

  async getRun(runId: number, signal?: AbortSignal): Promise<SiteRunView> {
    return asRunView(await this.call('GET', `/runs/${runId}`, undefined, signal), `/runs/${runId}`);
  }

  async listUnfinishedRuns(signal?: AbortSignal): Promise<SiteRunView[]> {
    return asRunList(await this.call('GET', '/runs', undefined, signal), '/runs');
  }

  async start(runId: number, signal?: AbortSignal): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/start`, {}, signal), `/runs/${runId}/start`);
  }

  async progress(runId: number, progress: ProgressReport, signal?: AbortSignal): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/progress`, progress, signal), `/runs/${runId}/progress`);
  }

  async log(runId: number, text: string, signal?: AbortSignal): Promise<SiteRunView> {
    return asRunView(await this.call('POST', `/runs/${runId}/log`, { text }, signal), `/runs/${runId}/log`);
  }

  /**
   * Told just before a run's final report is sent (each attempt). The executor reports a run
   * only once its container has exited (it is removed after the report), so the site client
   * frees the run's slot here rather than on the answer: the next claim travels while the report does.
   */
  onFinishing: ((runId: number) => void) | null = null;

  async finish(runId: number, report: FinishReport, signal?: AbortSignal): Promise<SiteRunView> {
    this.onFinishing?.(runId);
    return asRunView(await this.call('POST', `/runs/${runId}/finish`, report, signal), `/runs/${runId}/finish`);
  }

  /** Streams one result file; `name` has been validated as a safe relative path. `signal` ends the upload at once. */
  async uploadFile(runId: number, name: string, body: Readable, size: number, signal?: AbortSignal): Promise<void> {
    const path = name.split('/').map(encodeURIComponent).join('/');
    await this.call('PUT', `/runs/${runId}/files/${path}`, body, signal, size);
  }

  /** A principal's public key record as the registry relays it (checked by the caller). */
  async publicKey(kind: string, name: string): Promise<unknown> {
    return this.call('GET', `/keys/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`);
  }

  /** Registers the site's public key (with a signed rotation when it replaces one). */
  async registerPublicKey(body: { publicKey: unknown; rotation?: unknown }): Promise<unknown> {
    return this.call('POST', '/public-key', body);
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
    return asRunView(await this.call('POST', `/runs/${runId}/await-approval`, {}), `/runs/${runId}/await-approval`);
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

/**
 * A check of one kind of answer, from the wire schema the registry documents it with. A malformed
 * answer is treated like an unavailable registry (retried later), never trusted.
 */
function check<T>(schema: object): (v: unknown, path: string) => T {
  const validate = responseCheck<T>(schema);
  return (v, path) => {
    const result = validate(v);
    if (result.ok) return result.value;
    throw new RegistryUnavailableError(
      `registry answered ${path} with a malformed body: ${result.problems.slice(0, 3).join('; ')}`,
      null,
    );
  };
}

const asSiteMe = check<SiteMe>(siteMeSchema);
const asAssignment = check<RunAssignment>(runAssignmentSchema);
const asRunView = check<SiteRunView>(siteRunViewSchema);
const asRunList = check<SiteRunView[]>(siteRunListSchema);

function summarize(text: string): string {
  return text.length > 200 ? text.slice(0, 200) + '…' : text;
}
