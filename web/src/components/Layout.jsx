// SPDX-License-Identifier: Apache-2.0
// The frame around every signed-in page: the top bar (product, version, account menu), the
// navigation (a sidebar, a drop-down on a narrow screen) and the page itself.

import { useEffect, useRef, useState } from 'preact/hooks';
import { buildHash, navRoutes } from '../lib/routes.js';
import { Logo } from './Logo.jsx';

function AccountMenu({ session, onChangePassword, onLogout }) {
  const [open, setOpen] = useState(false);
  const ref = useRef(null);
  useEffect(() => {
    if (!open) return undefined;
    const away = (e) => {
      if (ref.current && !ref.current.contains(e.target)) setOpen(false);
    };
    const esc = (e) => {
      if (e.key === 'Escape') {
        setOpen(false);
        ref.current && ref.current.querySelector('button').focus();
      }
    };
    document.addEventListener('click', away);
    document.addEventListener('keydown', esc);
    return () => {
      document.removeEventListener('click', away);
      document.removeEventListener('keydown', esc);
    };
  }, [open]);
  const a = session.account;
  return (
    <div class="account-menu" ref={ref}>
      <button type="button" class="button button-ghost" aria-expanded={open} aria-controls="account-menu-list" onClick={() => setOpen(!open)}>
        <span class="account-name">{a.username}</span>
        <span class="badge">{a.is_admin ? 'Admin' : 'Member'}</span>
        <span aria-hidden="true">▾</span>
      </button>
      <ul id="account-menu-list" class="menu" hidden={!open}>
        <li>
          <button
            type="button"
            onClick={() => {
              setOpen(false);
              onChangePassword();
            }}
          >
            Change password
          </button>
        </li>
        <li>
          <button
            type="button"
            onClick={() => {
              setOpen(false);
              onLogout();
            }}
          >
            Log out
          </button>
        </li>
      </ul>
    </div>
  );
}

export function Layout({ session, route, children, onChangePassword, onLogout }) {
  const [navOpen, setNavOpen] = useState(false);
  useEffect(() => setNavOpen(false), [route.path]);
  const skip = (e) => {
    e.preventDefault();
    const main = document.getElementById('main');
    if (main) main.focus();
  };
  return (
    <div class="shell">
      <a class="skip-link" href="#main" onClick={skip}>
        Skip to content
      </a>
      <header class="topbar">
        <button type="button" class="button button-ghost nav-toggle" aria-expanded={navOpen} aria-controls="sidebar" onClick={() => setNavOpen(!navOpen)}>
          Menu
        </button>
        <a class="brand" href={buildHash('/')}>
          <Logo size={24} />
          <span>Onlyboxes</span>
        </a>
        {session.console_version && (
          <a class="version" href={session.console_repo_url} target="_blank" rel="noopener noreferrer" title="Source code">
            v{session.console_version}
          </a>
        )}
        <span class="spacer" />
        <AccountMenu session={session} onChangePassword={onChangePassword} onLogout={onLogout} />
      </header>
      <nav id="sidebar" class={navOpen ? 'sidebar open' : 'sidebar'} aria-label="Main">
        <ul>
          {navRoutes(session).map((r) => (
            <li key={r.path}>
              <a href={buildHash(r.path)} aria-current={r.path === route.path ? 'page' : undefined}>
                {r.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
