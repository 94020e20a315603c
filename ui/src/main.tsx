/**
 * The PHT dashboard: a small Preact app served by the registry at /ui/, talking to /api/v1 with
 * the signed-in token. Preact renders every value as text (never as HTML), so names, logs and
 * reasons from sites and containers cannot inject markup.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, useToken } from './api.js';
import { forgetToken, saveSession, savedIdentity, savedToken, type Identity } from './session.js';
import { useRoute, type Route } from './router.js';
import { Admin } from './views/Admin.js';
import { NewTask } from './views/NewTask.js';
import { RunView } from './views/RunView.js';
import { SignIn } from './views/SignIn.js';
import { Sites } from './views/Sites.js';
import { TaskDetail } from './views/TaskDetail.js';
import { TaskList } from './views/TaskList.js';

function Screen({ route, who }: { route: Route; who: Identity }) {
  switch (route.name) {
    case 'tasks':
      return <TaskList status={route.status} site={route.site} q={route.q} page={route.page} />;
    case 'newTask':
      return <NewTask />;
    case 'task':
      return <TaskDetail key={route.id} id={route.id} />;
    case 'run':
      return <RunView key={route.id} id={route.id} />;
    case 'sites':
      return <Sites admin={who.role === 'admin'} q={route.q} page={route.page} />;
    case 'admin':
      return who.role === 'admin' ? <Admin /> : <p>Only admins can manage researchers.</p>;
    case 'notFound':
      return (
        <>
          <h1 id="page-title" tabIndex={-1}>
            Not found
          </h1>
          <p>
            There is no page here. <a href="#/tasks">Go to the tasks</a>.
          </p>
        </>
      );
  }
}

function NavLink({ href, current, children }: { href: string; current: boolean; children: string }) {
  return (
    <a href={href} aria-current={current ? 'page' : undefined}>
      {children}
    </a>
  );
}

function App() {
  const route = useRoute();
  const [token, setToken] = useState<string | null>(savedToken);
  // A reload draws at once with the identity kept beside the token; /me confirms it meanwhile.
  const [who, setWho] = useState<Identity | null>(() => (savedToken() ? savedIdentity() : null));

  function signOut() {
    forgetToken();
    useToken(null, () => undefined);
    setWho(null);
    setToken(null);
  }
  useToken(token, signOut);

  // A token kept from earlier in this tab is checked again (it may have been revoked, or its
  // role changed). A registry that cannot be reached signs nobody out who was already in.
  useEffect(() => {
    if (!token) return;
    api.me(token).then(
      (me) => {
        if (me.kind !== 'user' || (me.role !== 'researcher' && me.role !== 'admin')) return signOut();
        const confirmed: Identity = { name: me.name, role: me.role };
        saveSession(token, confirmed);
        setWho((current) =>
          current?.name === confirmed.name && current.role === confirmed.role ? current : confirmed,
        );
      },
      (e: unknown) => {
        if (!(e instanceof ApiError) || e.status === 401 || e.status === 403 || !savedIdentity()) signOut();
      },
    );
  }, [token]);

  // Moving to a new screen puts the focus on its heading, so keyboard and screen reader users start there.
  useEffect(() => {
    document.getElementById('page-title')?.focus({ preventScroll: false });
    document.title = `${document.getElementById('page-title')?.textContent ?? 'PHT'} · PHT registry`;
  }, [route, who]);

  if (!token || !who) {
    if (token && !who)
      return (
        <main id="main">
          <p role="status">Signing in…</p>
        </main>
      );
    return (
      <SignIn
        onSignedIn={(t, identity) => {
          saveSession(t, identity);
          setToken(t);
          setWho(identity);
        }}
      />
    );
  }
  const at = route.name;
  return (
    <>
      <a
        class="skip"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          document.getElementById('main')?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <span class="brand">PHT registry</span>
        <nav aria-label="Main">
          <NavLink href="#/tasks" current={at === 'tasks' || at === 'task' || at === 'run'}>
            Tasks
          </NavLink>
          <NavLink href="#/tasks/new" current={at === 'newTask'}>
            New task
          </NavLink>
          <NavLink href="#/sites" current={at === 'sites'}>
            Sites
          </NavLink>
          {who.role === 'admin' ? (
            <NavLink href="#/admin" current={at === 'admin'}>
              Researchers
            </NavLink>
          ) : null}
        </nav>
        <span class="who">
          {who.name} <span class="muted">({who.role})</span>
        </span>
        <button type="button" class="small" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Screen route={route} who={who} />
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
