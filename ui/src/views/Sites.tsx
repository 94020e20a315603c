import { useState } from 'preact/hooks';
import { SITE_NAME_PATTERN } from '../../../shared/names.js';
import type { CreatedSite, SiteActivity } from '../../../shared/types.js';
import { api, ApiError } from '../api.js';
import { ErrorMessage, Loading, Page, SecretOnce } from '../components.js';
import { formatAgo, formatCount } from '../format.js';
import { useLoad } from '../hooks.js';

const REFRESH_MS = 10_000;
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

/** Every site with what it has done; admins add, disable and enable sites here. */
export function Sites({ admin }: { admin: boolean }) {
  const sites = useLoad((signal) => api.siteActivity(signal), [], REFRESH_MS);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  // Enabling a disabled site gives it a new key (the old one stays revoked): shown once, here.
  const [enabledKey, setEnabledKey] = useState<CreatedSite | null>(null);
  const list = sites.data ?? [];
  const online = list.filter((s) => s.online).length;
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
      <ErrorMessage error={sites.error ?? actionError} />
      {!sites.data ? (
        sites.error ? null : (
          <Loading what="sites" />
        )
      ) : (
        <>
          <p>
            {formatCount(list.length)} sites, {formatCount(online)} online now.{' '}
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
    </Page>
  );
}
