/**
 * The dashboard's client of the registry's REST API (/api/v1), typed with the wire shapes of
 * shared/types.ts. Every call sends the bearer token in a header; nothing else authenticates.
 */
import type {
  ApiErrorBody,
  CreatedSite,
  CreatedUser,
  CreateTaskRequest,
  ResultFile,
  RunDetail,
  SiteActivityList,
  SiteEnabled,
  SiteInfo,
  Task,
  TaskSummaryList,
  UserInfo,
} from '../../shared/types.js';

const BASE = '/api/v1';

/** A refusal or failure from the registry, with its error code (or `network_error`). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

let token: string | null = null;
let onUnauthorized: () => void = () => undefined;

export function useToken(value: string | null, unauthorized: () => void): void {
  token = value;
  onUnauthorized = unauthorized;
}

function headers(json: boolean, override?: string): Record<string, string> {
  const h: Record<string, string> = {};
  const t = override ?? token;
  if (t) h.Authorization = `Bearer ${t}`;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

async function toError(res: Response): Promise<ApiError> {
  let body: Partial<ApiErrorBody> = {};
  try {
    body = (await res.json()) as ApiErrorBody;
  } catch {
    /* not JSON: keep the status */
  }
  return new ApiError(
    res.status,
    typeof body.code === 'string' ? body.code : 'http_error',
    typeof body.message === 'string' ? body.message : `the registry answered ${res.status}`,
    body.details,
  );
}

async function send(method: string, path: string, body?: unknown, signal?: AbortSignal, auth?: string) {
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers: headers(body !== undefined, auth),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      // The token is all the authority there is: never send cookies, never follow to elsewhere.
      credentials: 'omit',
      redirect: 'error',
      cache: 'no-store',
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ApiError(0, 'network_error', 'the registry cannot be reached');
  }
  if (!res.ok) {
    const error = await toError(res);
    if (res.status === 401 && auth === undefined) onUnauthorized();
    throw error;
  }
  return res;
}

async function json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  return (await (await send(method, path, body, signal)).json()) as T;
}

export interface TaskFilter {
  status?: string;
  site?: string;
  q?: string;
  limit: number;
  offset: number;
}

function queryString(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const api = {
  /** Checks a token before it is kept: who it belongs to. */
  async me(candidate: string): Promise<{ name: string; kind: string; role: string }> {
    return (await (await send('GET', '/me', undefined, undefined, candidate)).json()) as {
      name: string;
      kind: string;
      role: string;
    };
  },
  taskSummaries(filter: TaskFilter, signal?: AbortSignal) {
    return json<TaskSummaryList>('GET', `/task-summaries${queryString({ ...filter })}`, undefined, signal);
  },
  task(id: number, signal?: AbortSignal) {
    return json<Task>('GET', `/tasks/${id}`, undefined, signal);
  },
  createTask(body: CreateTaskRequest) {
    return json<Task>('POST', '/tasks', body);
  },
  cancelTask(id: number) {
    return json<Task>('POST', `/tasks/${id}/cancel`, {});
  },
  run(id: number, signal?: AbortSignal) {
    return json<RunDetail>('GET', `/runs/${id}`, undefined, signal);
  },
  async log(id: number, signal?: AbortSignal): Promise<string> {
    return (await send('GET', `/runs/${id}/log`, undefined, signal)).text();
  },
  files(id: number, signal?: AbortSignal) {
    return json<ResultFile[]>('GET', `/runs/${id}/files`, undefined, signal);
  },
  async file(id: number, name: string): Promise<Blob> {
    return (await send('GET', `/runs/${id}/files/${name.split('/').map(encodeURIComponent).join('/')}`)).blob();
  },
  sites(signal?: AbortSignal) {
    return json<SiteInfo[]>('GET', '/sites', undefined, signal);
  },
  siteActivity(filter: { q?: string; limit: number; offset: number }, signal?: AbortSignal) {
    return json<SiteActivityList>('GET', `/sites/activity${queryString({ ...filter })}`, undefined, signal);
  },
  createSite(name: string) {
    return json<CreatedSite>('POST', '/admin/sites', { name });
  },
  setSiteEnabled(name: string, enabled: boolean) {
    return json<SiteEnabled>('POST', `/admin/sites/${encodeURIComponent(name)}/${enabled ? 'enable' : 'disable'}`, {});
  },
  users(signal?: AbortSignal) {
    return json<UserInfo[]>('GET', '/admin/users', undefined, signal);
  },
  createUser(name: string, role: 'researcher' | 'admin') {
    return json<CreatedUser>('POST', '/admin/users', { name, role });
  },
};

/**
 * Follows a task's server-sent events (GET /tasks/:id/events). EventSource cannot send an
 * Authorization header, so the stream is read with fetch. Resolves when the registry ends the
 * stream (the task is final) or `signal` aborts.
 */
export async function followTask(id: number, onTask: (task: Task) => void, signal: AbortSignal): Promise<void> {
  const res = await send('GET', `/tasks/${id}/events`, undefined, signal);
  if (!res.body) throw new ApiError(0, 'network_error', 'the event stream has no body');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (event === 'task' && data.length) onTask(JSON.parse(data.join('\n')) as Task);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
