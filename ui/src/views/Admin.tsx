import { useState } from 'preact/hooks';
import { USER_NAME_PATTERN } from '../../../shared/names.js';
import type { CreatedUser } from '../../../shared/types.js';
import { api, ApiError } from '../api.js';
import { ErrorMessage, Loading, Page, SecretOnce } from '../components.js';
import { formatAgo } from '../format.js';
import { useLoad } from '../hooks.js';

const USER_NAME = new RegExp(USER_NAME_PATTERN);

/** Researchers and admins: the list, and creating one (its token shown once). */
export function Admin() {
  const users = useLoad((signal) => api.users(signal), []);
  const [name, setName] = useState('');
  const [role, setRole] = useState<'researcher' | 'admin'>('researcher');
  const [problem, setProblem] = useState<string | null>(null);
  const [created, setCreated] = useState<CreatedUser | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const n = name.trim();
    if (!USER_NAME.test(n)) {
      setProblem('A name is 1 to 128 letters, digits, ".", "_", "@" or "-", starting with a letter or digit.');
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      setCreated(await api.createUser(n, role));
      setName('');
      users.reload();
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Page title="Researchers and admins">
      {created ? (
        <SecretOnce
          label={`Token of ${created.role} ${created.name}`}
          value={created.token}
          onDone={() => setCreated(null)}
        />
      ) : (
        <form class="inline-form" onSubmit={(e) => void submit(e)} noValidate aria-labelledby="add-user-title">
          <h2 id="add-user-title">Create a researcher</h2>
          <label class="field">
            <span>Name</span>
            <input
              value={name}
              spellcheck={false}
              autoComplete="off"
              onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
              aria-invalid={problem ? 'true' : undefined}
              aria-describedby={problem ? 'add-user-error' : undefined}
            />
          </label>
          <label class="field">
            <span>Role</span>
            <select
              value={role}
              onChange={(e) =>
                setRole((e.currentTarget as HTMLSelectElement).value === 'admin' ? 'admin' : 'researcher')
              }
            >
              <option value="researcher">researcher</option>
              <option value="admin">admin</option>
            </select>
          </label>
          <button type="submit" disabled={busy}>
            Create
          </button>
          {problem ? (
            <p id="add-user-error" class="field-error">
              {problem}
            </p>
          ) : null}
        </form>
      )}
      <ErrorMessage error={users.error} />
      {!users.data ? (
        users.error ? null : (
          <Loading what="users" />
        )
      ) : (
        <table class="list">
          <caption class="visually-hidden">Researchers and admins</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Enabled</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {users.data.map((u) => (
              <tr key={u.name}>
                <th scope="row">{u.name}</th>
                <td>{u.role}</td>
                <td>{u.enabled ? 'enabled' : 'disabled'}</td>
                <td>{formatAgo(u.lastSeen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
