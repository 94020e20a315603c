import { Router } from 'express';
import type { RunState } from '../../shared/run-state.js';
import { LIMITS, validateSiteActivityQuery, validateTaskSummaryQuery } from '../../shared/schemas.js';
import type { SiteActivity, SiteActivityList } from '../../shared/types.js';
import { principalOf, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import { query } from './request-parsing.js';

/** A site is "online" when its last request is this recent: a long poll lasts at most 60 s. */
export const ONLINE_WINDOW_MS = 90_000;

const count = (byState: Partial<Record<RunState, number>>, states: readonly RunState[]) =>
  states.reduce((sum, s) => sum + (byState[s] ?? 0), 0);

/** Read-only overviews for researchers and admins (the dashboard's task list and sites screen). */
export function overviewRoutes(ctx: RegistryContext): Router {
  const { store } = ctx;
  const router = Router();

  // A page of tasks without their runs: a page of 25 tasks sent to 500 sites each would otherwise
  // carry 12,500 runs. Filters: status, a site the task has a run at, text in name or image.
  router.get('/task-summaries', requireUser, async (req, res) => {
    const principal = principalOf(res);
    const q = query(req, validateTaskSummaryQuery);
    const limit = q.limit ?? LIMITS.defaultPageSize;
    const offset = q.offset ?? 0;
    const { tasks, total } = await store.listTaskSummaries({
      ownerId: principal.role === 'admin' ? null : principal.id,
      status: q.status ?? null,
      site: q.site ?? null,
      text: q.q ?? null,
      limit,
      offset,
    });
    res.json({ tasks, total, limit, offset });
  });

  // One page of sites by name with their run counts, in three queries whatever the number of
  // sites; the browser renders one page (500 rows took it about a second). The filter (text in the
  // name or organization) is applied here, so total and online count every matching site. A
  // researcher's counts cover their own tasks only, as everything else a researcher sees.
  router.get('/sites/activity', requireUser, async (req, res) => {
    const q = query(req, validateSiteActivityQuery);
    const limit = q.limit ?? LIMITS.defaultPageSize;
    const offset = q.offset ?? 0;
    const principal = principalOf(res);
    const [sites, counts, organizations] = await Promise.all([
      store.listSites(),
      store.siteRunCounts(principal.role === 'admin' ? null : principal.id),
      store.listOrganizations(),
    ]);
    // Organizations list their members as "kind:name"; a principal belongs to one at most.
    const organizationOf = new Map<string, string>();
    for (const organization of organizations)
      for (const member of organization.members)
        if (member.startsWith('site:')) organizationOf.set(member.slice('site:'.length), organization.name);
    const needle = q.q?.toLowerCase() ?? null;
    const now = Date.now();
    const matching = sites
      .map((site) => ({
        site,
        organization: organizationOf.get(site.name) ?? null,
        online: site.enabled && site.lastSeen !== null && now - Date.parse(site.lastSeen) <= ONLINE_WINDOW_MS,
      }))
      .filter(
        ({ site, organization }) =>
          needle === null ||
          site.name.toLowerCase().includes(needle) ||
          (organization?.toLowerCase().includes(needle) ?? false),
      );
    const page: SiteActivity[] = matching.slice(offset, offset + limit).map(({ site, organization, online }) => {
      const byState = counts.get(site.name) ?? {};
      return {
        ...site,
        organization,
        online,
        runs: {
          completed: count(byState, ['completed']),
          failed: count(byState, ['failed', 'rejected', 'timed_out']),
          current: count(byState, ['assigned', 'running', 'awaiting_approval']),
          queued: count(byState, ['queued']),
        },
      };
    });
    const body: SiteActivityList = {
      sites: page,
      total: matching.length,
      online: matching.filter((m) => m.online).length,
      limit,
      offset,
    };
    res.json(body);
  });

  return router;
}
