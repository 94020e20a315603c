import type { FinishReport, ProgressReport, RunAssignment } from '../../shared/types.js';

export interface PlayedRun {
  log?: string;
  /** Result files by name; objects are sent as JSON. */
  files?: Record<string, string | Buffer | object>;
  progress?: ProgressReport;
  finish?: FinishReport;
}

/**
 * Plays a site's part over plain HTTP on the site routes, so that tests can make runs start,
 * log, upload files and finish exactly when they want.
 */
export class SiteDouble {
  constructor(
    readonly registryUrl: string,
    readonly name: string,
    private readonly apiKey: string,
  ) {}

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const raw = Buffer.isBuffer(body) || typeof body === 'string';
    const response = await fetch(`${this.registryUrl}/api/v1/site${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.apiKey}`,
        ...(body !== undefined ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}),
      },
      body: body === undefined ? undefined : raw ? (body as Buffer | string) : JSON.stringify(body),
    });
    const text = await response.text();
    const parsed: unknown = text ? JSON.parse(text) : null;
    if (response.status >= 400)
      throw new Error(`site ${this.name}: ${method} ${path} answered ${response.status}: ${text}`);
    return { status: response.status, body: parsed };
  }

  /** Claims the site's next run, waiting for one to be queued. */
  async claim(waitSeconds = 10): Promise<RunAssignment> {
    const { status, body } = await this.call('GET', `/runs/next?wait=${waitSeconds}`);
    if (status === 204) throw new Error(`site ${this.name}: no run to claim`);
    return body as RunAssignment;
  }

  async start(runId: number): Promise<void> {
    await this.call('POST', `/runs/${runId}/start`, {});
  }

  async log(runId: number, text: string): Promise<void> {
    await this.call('POST', `/runs/${runId}/log`, { text });
  }

  async progress(runId: number, report: ProgressReport): Promise<void> {
    await this.call('POST', `/runs/${runId}/progress`, report);
  }

  async upload(runId: number, name: string, content: string | Buffer | object): Promise<void> {
    const bytes =
      typeof content === 'string' || Buffer.isBuffer(content)
        ? Buffer.from(content)
        : Buffer.from(JSON.stringify(content));
    await this.call('PUT', `/runs/${runId}/files/${name}`, bytes);
  }

  async finish(runId: number, report: FinishReport): Promise<void> {
    await this.call('POST', `/runs/${runId}/finish`, report);
  }

  /** Claims the next run and takes it to its end: start, log, progress, files, finish. */
  async play(run: PlayedRun = {}): Promise<RunAssignment> {
    const assignment = await this.claim();
    await this.start(assignment.id);
    if (run.progress) await this.progress(assignment.id, run.progress);
    if (run.log) await this.log(assignment.id, run.log);
    for (const [name, content] of Object.entries(run.files ?? {})) await this.upload(assignment.id, name, content);
    await this.finish(assignment.id, run.finish ?? { state: 'completed', exitCode: 0 });
    return assignment;
  }
}
