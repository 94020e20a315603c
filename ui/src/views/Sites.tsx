import { useEffect, useState } from 'preact/hooks';
import { SITE_NAME_PATTERN } from '../../../shared/names.js';
import type { CreatedSite, SiteActivity } from '../../../shared/types.js';
import { api, ApiError } from '../api.js';
import { ErrorMessage, Loading, Page, SecretOnce } from '../components.js';
import { formatAgo, formatCount } from '../format.js';
import { useLoad } from '../hooks.js';
import { navigate, sitesHref } from '../router.js';

const REFRESH_MS = 10_000;
/** Sites per page: 500 rows at once took the browser about a second to render. */
export const SITES_PAGE_SIZE = 50;
const SITE_NAME = new RegExp(SITE_NAME_PATTERN);

function AddSite({ onAdded }: { onAdded: () => void }) {
  const [name, setName] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const [created, setCreated] = useState<CreatedSite | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    const n = name.trim();
    if (!SITE_NAME.test(n)) {
      setProblem('A site name is 1 to 63 lowercase letters, digits, "-" or "_", starting with a letter or digit.');
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      setCreated(await api.createSite(n));
      setName('');
      onAdded();
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }
  if (created)
    return (
      <SecretOnce label={`API key of site ${created.name}`} value={created.apiKey} onDone={() => setCreated(null)} />
    );
  return (
    <form class="inline-form" onSubmit={(e) => void submit(e)} noValidate aria-labelledby="add-site-title">
      <h2 id="add-site-title">Add a site</h2>
      <label class="field">
        <span>Site name</span>
        <input
          value={name}
          spellcheck={false}
          autoComplete="off"
          onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
          aria-invalid={problem ? 'true' : undefined}
          aria-describedby={problem ? 'add-site-error' : undefined}
        />
      </label>
      <button type="submit" disabled={busy}>
        Add site
      </button>
      {problem ? (
        <p id="add-site-error" class="field-error">
          {problem}
        </p>
      ) : null}
    </form>
  );
}

function SiteRow({
  site,
  admin,
  onChanged,
}: {
  site: SiteActivity;
  admin: boolean;
  onChanged: (e: ApiError | null, newKey?: string) => void;
}) {
  const [busy, setBusy] = useState(false);
  async function toggle() {
    setBusy(true);
    try {
      const changed = await api.setSiteEnabled(site.name, !site.enabled);
      onChanged(null, changed.apiKey);
    } catch (e) {
      onChanged(e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e)));
    } finally {
      setBusy(false);
    }
  }
  return (
    <tr>
      <th scope="row">
        <a href={`#/tasks?site=${encodeURIComponent(site.name)}`}>{site.name}</a>
      </th>
      <td>{site.organization ?? <span class="muted">none</span>}</td>
      <td>{site.enabled ? 'enabled' : <span class="badge state-cancelled">disabled</span>}</td>
      <td>
        {site.online ? <span class="badge state-completed">online</span> : <span class="muted">offline,</span>}{' '}
        <span class="muted">last seen {formatAgo(site.lastSeen)}</span>
      </td>
      <td class="num">{formatCount(site.runs.completed)}</td>
      <td class="num">{formatCount(site.runs.failed)}</td>
      <td class="num">{formatCount(site.runs.current)}</td>
      <td class="num">{formatCount(site.runs.queued)}</td>
      {admin ? (
        <td>
          <button
            type="button"
            class={site.enabled ? 'danger small' : 'small'}
            onClick={() => void toggle()}
            disabled={busy}
            aria-label={`${site.enabled ? 'Disable' : 'Enable'} site ${site.name}`}
          >
            {site.enabled ? 'Disable' : 'Enable'}
          </button>
        </td>
      ) : null}
    </tr>
  );
}

/** Sites by name, a page at a time, filtered by name or organization; admins add, disable and enable sites here. */
export function Sites({ admin, q, page }: { admin: boolean; q: string; page: number }) {
  const offset = (page - 1) * SITES_PAGE_SIZE;
  const sites = useLoad(
    (signal) => api.siteActivity({ q: q || undefined, limit: SITES_PAGE_SIZE, offset }, signal),
    [q, offset],
    REFRESH_MS,
  );
  const [text, setText] = useState(q);
  useEffect(() => setText(q), [q]);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  // Enabling a disabled site gives it a new key (the old one stays revoked): shown once, here.
  const [enabledKey, setEnabledKey] = useState<CreatedSite | null>(null);
  const list = sites.data?.sites ?? [];
  const total = sites.data?.total ?? 0;
  const last = Math.max(1, Math.ceil(total / SITES_PAGE_SIZE));
  return (
    <Page title="Sites">
      {enabledKey ? (
        <SecretOnce
          label={`New API key of site ${enabledKey.name}`}
          value={enabledKey.apiKey}
          onDone={() => setEnabledKey(null)}
        />
      ) : null}
      {admin ? <AddSite onAdded={sites.reload} /> : null}
      <form
        class="filters"
        role="search"
        aria-label="Filter sites"
        onSubmit={(e) => {
          e.preventDefault();
          navigate(sitesHref({ q: text.trim(), page: 1 }));
        }}
      >
        <label class="field grow">
          <span>Search sites</span>
          <input
            type="search"
            value={text}
            maxLength={200}
            placeholder="name or organization"
            onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorMessage error={sites.error ?? actionError} />
      {!sites.data ? (
        sites.error ? null : (
          <Loading what="sites" />
        )
      ) : list.length === 0 ? (
        <p>No sites{q ? ' match this filter' : total > 0 ? ' on this page' : ' yet'}.</p>
      ) : (
        <>
          <p>
            {formatCount(total)} sites{q ? ' match' : ''}, {formatCount(sites.data.online)} online now.{' '}
            {admin ? 'Run counts cover every task.' : 'Run counts cover your tasks.'}
          </p>
          <div class="table-scroll">
            <table class="list">
              <caption class="visually-hidden">Sites</caption>
              <thead>
                <tr>
                  <th scope="col">Site</th>
                  <th scope="col">Organization</th>
                  <th scope="col">Enabled</th>
                  <th scope="col">Online</th>
                  <th scope="col" class="num">
                    Runs done
                  </th>
                  <th scope="col" class="num">
                    Failed
                  </th>
                  <th scope="col" class="num">
                    Current
                  </th>
                  <th scope="col" class="num">
                    Queued
                  </th>
                  {admin ? (
                    <th scope="col">
                      <span class="visually-hidden">Actions</span>
                    </th>
                  ) : null}
                </tr>
              </thead>
              <tbody>
                {list.map((s) => (
                  <SiteRow
                    key={s.name}
                    site={s}
                    admin={admin}
                    onChanged={(e, newKey) => {
                      setActionError(e);
                      if (newKey) setEnabledKey({ name: s.name, apiKey: newKey });
                      sites.reload();
                    }}
                  />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {sites.data && total > SITES_PAGE_SIZE ? (
        <nav class="pager" aria-label="Pages">
          {page > 1 ? (
            <a class="button" href={sitesHref({ q, page: page - 1 })}>
              Previous page
            </a>
          ) : null}
          <span>
            {/* The rows on screen, not the page asked for: until the new page arrives the old one shows. */}
            {formatCount(Math.min(sites.data.offset + 1, total))}–{formatCount(sites.data.offset + list.length)} of{' '}
            {formatCount(total)}
          </span>
          {page < last ? (
            <a class="button" href={sitesHref({ q, page: page + 1 })}>
              Next page
            </a>
          ) : null}
        </nav>
      ) : null}
    </Page>
  );
}
