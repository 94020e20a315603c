/**
 * Hash routes (#/tasks/12): the registry serves one static page, and no route ever puts the token
 * in a URL. A route is parsed into a typed value; anything unknown is `notFound`.
 */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { name: 'tasks'; status: string; site: string; q: string; page: number }
  | { name: 'newTask' }
  | { name: 'task'; id: number }
  | { name: 'run'; id: number }
  | { name: 'sites'; q: string; page: number }
  | { name: 'admin' }
  | { name: 'notFound'; path: string };

const ID = /^[1-9][0-9]{0,14}$/;

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/tasks';
  const [path = '', search = ''] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean);
  const q = new URLSearchParams(search);
  const page = Number(q.get('page') ?? '1');
  const pageNumber = Number.isInteger(page) && page >= 1 ? page : 1;
  if (parts[0] === 'tasks' && parts.length === 1) {
    return {
      name: 'tasks',
      status: q.get('status') ?? '',
      site: q.get('site') ?? '',
      q: q.get('q') ?? '',
      page: pageNumber,
    };
  }
  if (parts[0] === 'tasks' && parts[1] === 'new' && parts.length === 2) return { name: 'newTask' };
  if (parts[0] === 'tasks' && parts.length === 2 && ID.test(parts[1]!)) return { name: 'task', id: Number(parts[1]) };
  if (parts[0] === 'runs' && parts.length === 2 && ID.test(parts[1]!)) return { name: 'run', id: Number(parts[1]) };
  if (parts[0] === 'sites' && parts.length === 1) return { name: 'sites', q: q.get('q') ?? '', page: pageNumber };
  if (parts[0] === 'admin' && parts.length === 1) return { name: 'admin' };
  return { name: 'notFound', path: raw };
}

export function tasksHref(filter: { status?: string; site?: string; q?: string; page?: number }): string {
  const q = new URLSearchParams();
  if (filter.status) q.set('status', filter.status);
  if (filter.site) q.set('site', filter.site);
  if (filter.q) q.set('q', filter.q);
  if (filter.page && filter.page > 1) q.set('page', String(filter.page));
  const s = q.toString();
  return `#/tasks${s ? `?${s}` : ''}`;
}

export function sitesHref(filter: { q?: string; page?: number }): string {
  const q = new URLSearchParams();
  if (filter.q) q.set('q', filter.q);
  if (filter.page && filter.page > 1) q.set('page', String(filter.page));
  const s = q.toString();
  return `#/sites${s ? `?${s}` : ''}`;
}

export function navigate(href: string): void {
  if (location.hash !== href) location.hash = href;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
