// SPDX-License-Identifier: Apache-2.0
// The dashboard: asks the console who is signed in once, then shows the page the URL's hash
// names (or sends the visitor where routes.js says). A 401 from any call returns to sign-in, with
// the page to come back to.

import { render } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { createApi } from './lib/api.js';
import { buildHash, parseHash, resolveRoute } from './lib/routes.js';
import { Layout } from './components/Layout.jsx';
import { LoginPage } from './pages/Login.jsx';
import { WorkersPage } from './pages/Workers.jsx';
import { TokensPage } from './pages/Tokens.jsx';
import { AccountsPage } from './pages/Accounts.jsx';
import { WorkerToolPage } from './pages/WorkerTool.jsx';
import { SessionsPage } from './pages/Sessions.jsx';
import { TasksPage } from './pages/Tasks.jsx';
import { TerminalPage } from './pages/Terminal.jsx';
import { ChangePasswordDialog } from './pages/ChangePassword.jsx';
import '@xterm/xterm/css/xterm.css';
import './styles.css';

const PAGES = {
  login: LoginPage,
  workers: WorkersPage,
  tokens: TokensPage,
  accounts: AccountsPage,
  'worker-tool': WorkerToolPage,
  sessions: SessionsPage,
  tasks: TasksPage,
  terminal: TerminalPage,
};

// The session is asked for at once, while the page is still being set up: the first screen
// waits for this answer and nothing else.
let onSessionEnded = () => {};
const api = createApi(window.fetch.bind(window), () => onSessionEnded());
const firstSession = api.get('/api/v1/console/session', { quiet401: true }).then(
  (s) => ({ session: s }),
  (e) => (e.status === 401 ? { session: null } : { error: e.message }),
);

/** Where the URL points, after any redirect routes.js asks for (applied to the URL at once). */
function currentRoute(session) {
  let loc = parseHash(window.location.hash);
  for (let i = 0; i < 3; i++) {
    const r = resolveRoute(loc.path, loc.query, session);
    if (!r.redirect) return { route: r.route, loc };
    window.history.replaceState(null, '', '#' + r.redirect);
    loc = parseHash(r.redirect);
  }
  return { route: null, loc };
}

function App() {
  const [session, setSession] = useState(undefined); // undefined: asking; null: signed out
  const [bootError, setBootError] = useState('');
  const [, setTick] = useState(0);
  const [changingPassword, setChangingPassword] = useState(false);
  const mainTitle = useRef('');
  const rerender = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    window.addEventListener('hashchange', rerender);
    return () => window.removeEventListener('hashchange', rerender);
  }, [rerender]);

  useEffect(() => {
    onSessionEnded = () => {
      setChangingPassword(false);
      setSession(null);
    };
    firstSession.then((r) => (r.error ? setBootError(r.error) : setSession(r.session)));
  }, []);

  const navigate = useCallback(
    (path, query = {}, { replace = false } = {}) => {
      const hash = buildHash(path, query);
      if (replace) window.history.replaceState(null, '', hash);
      else window.history.pushState(null, '', hash);
      rerender();
    },
    [rerender],
  );

  const { route, loc } = session === undefined ? { route: null, loc: null } : currentRoute(session);
  useLayoutEffect(() => {
    if (!route) return;
    document.title = `${route.title} · Onlyboxes`;
    // A new page: tell screen readers by moving focus to its heading (not on the first load).
    if (mainTitle.current && mainTitle.current !== route.path) {
      const h = document.querySelector('main h1');
      if (h) h.focus();
    }
    mainTitle.current = route.path;
  }, [route && route.path]);

  const logout = useCallback(async () => {
    try {
      await api.post('/api/v1/console/logout', undefined, { quiet401: true });
    } catch {
      // signed out on this side whatever the console said
    }
    setSession(null);
    navigate('/login', {}, { replace: true });
  }, [navigate]);

  if (bootError) {
    return (
      <main class="boot">
        <p class="notice notice-error" role="alert">
          The console did not answer: {bootError}
        </p>
      </main>
    );
  }
  if (!route) {
    return (
      <main class="boot" aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  }
  const Page = PAGES[route.name];
  const props = { api, session, query: loc.query, navigate, onSession: setSession };
  if (route.public) return <Page {...props} />;
  return (
    <Layout session={session} route={route} onChangePassword={() => setChangingPassword(true)} onLogout={logout}>
      <Page key={route.path} {...props} />
      {changingPassword && <ChangePasswordDialog api={api} onClose={() => setChangingPassword(false)} />}
    </Layout>
  );
}

render(<App />, document.getElementById('app'));
