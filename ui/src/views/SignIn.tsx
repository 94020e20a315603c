import { useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import type { Identity } from '../session.js';

/** The first screen: a token (researcher or admin) checked against /me before it is kept. */
export function SignIn({ onSignedIn }: { onSignedIn: (token: string, who: Identity) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const candidate = token.trim();
    if (!candidate) {
      setError('Enter your token.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await api.me(candidate);
      if (me.kind !== 'user' || (me.role !== 'researcher' && me.role !== 'admin')) {
        setError('This is not a researcher or admin token.');
        return;
      }
      onSignedIn(candidate, { name: me.name, role: me.role });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError('This token is not known to the registry.');
      else if (err instanceof ApiError && err.status === 403)
        // 403: a disabled account (the registry says so), or a key that is not a user's (a site key).
        setError(
          err.message.includes('disabled')
            ? err.message
            : 'This is a site key: sign in with a researcher or admin token.',
        );
      else setError(err instanceof ApiError ? err.message : 'Signing in failed.');
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" class="signin">
      <h1>PHT registry</h1>
      <p>Sign in with your researcher or admin token. It is kept in this browser tab only.</p>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <label class="field">
          <span>Token</span>
          <input
            type="password"
            name="token"
            autoComplete="off"
            spellcheck={false}
            value={token}
            onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)}
            aria-invalid={error ? 'true' : undefined}
            aria-describedby={error ? 'signin-error' : undefined}
          />
        </label>
        {error ? (
          <p id="signin-error" class="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
