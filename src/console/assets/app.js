// The console: a hash router over the merchant and operator views, the login forms, and the
// live refresh (short polling of the shown view, paused while the tab is hidden).

import { api, session, ApiError } from './api.js';
import { h, fill, field } from './dom.js';
import * as merchant from './merchant.js';
import * as operator from './operator.js';

const POLL_MS = 2000;

const VIEWS = {
  keys: { title: 'Keys', who: 'user', view: merchant.keys },
  resources: { title: 'Resources', who: 'user', view: merchant.resources },
  settlements: { title: 'Settlements', who: 'user', view: merchant.settlements },
  charts: { title: 'Charts', who: 'user', view: merchant.charts },
  networks: { title: 'Networks', who: 'admin', view: operator.networks },
  signers: { title: 'Signers', who: 'admin', view: operator.signers },
  fleet: { title: 'Fleet', who: 'admin', view: operator.fleet },
  inflight: { title: 'In flight', who: 'admin', view: operator.inflight },
  users: { title: 'Users', who: 'admin', view: operator.users },
  assets: { title: 'Assets', who: 'admin', view: operator.assets },
};

let current = null;
let timer = null;
let last = 0;

/** A message at the top; errors in red. Text only. */
export function flash(message, kind = 'info') {
  const box = document.getElementById('flash');
  fill(box, message ? h('p', { class: `flash ${kind}` }, message) : null);
}

export function showError(err) {
  flash(err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err), 'error');
}

/** Show `#/name`: through `hashchange` when the hash changes, at once when it does not. */
function go(name) {
  if (location.hash === `#/${name}`) route();
  else location.hash = `#/${name}`;
}

function allowed(name) {
  const v = VIEWS[name];
  return v && ((v.who === 'user' && session.hasUser()) || (v.who === 'admin' && session.hasAdmin()));
}

function nav(active) {
  const links = Object.entries(VIEWS)
    .filter(([name]) => allowed(name))
    .map(([name, v]) =>
      h('a', { href: `#/${name}`, class: name === active ? 'active' : null, 'data-view': name }, v.title),
    );
  // The other login, for whoever holds both roles.
  const other = !session.hasUser() && !session.hasAdmin() ? 'Log in' : !session.hasAdmin() ? 'Operator login' : !session.hasUser() ? 'Merchant login' : null;
  if (other) links.push(h('a', { href: '#/login', class: active === 'login' ? 'active' : null }, other));
  fill(document.getElementById('nav'), links);
  const who = [session.hasUser() ? session.email() || 'merchant' : null, session.hasAdmin() ? 'operator' : null].filter(Boolean);
  document.getElementById('who').textContent = who.join(' · ');
  document.getElementById('logout').hidden = who.length === 0;
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
  if (current && current.dispose) current.dispose();
  current = null;
}

async function tick() {
  if (!current || !current.refresh || document.hidden) return;
  if (current.every && Date.now() - last < current.every) return;
  last = Date.now();
  try {
    await current.refresh();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      route();
      return;
    }
    showError(err);
  }
}

async function route() {
  stop();
  const name = (location.hash.replace(/^#\/?/, '') || '').split('?')[0];
  const main = document.getElementById('main');
  if (!allowed(name)) {
    const first = Object.keys(VIEWS).find(allowed);
    if (name !== 'login' && first) {
      go(first);
      return;
    }
    nav('login');
    fill(main, login());
    return;
  }
  nav(name);
  flash('');
  // Busy until its first data is shown (assistive technology waits; so do the browser tests,
  // which must not click into a layout that is about to move).
  const section = h('section', { class: 'view', id: `view-${name}`, 'aria-busy': 'true' }, h('h1', {}, VIEWS[name].title));
  fill(main, section);
  try {
    current = VIEWS[name].view(section, { flash, showError });
    last = Date.now();
    if (current && current.refresh) await current.refresh();
  } catch (err) {
    showError(err);
  } finally {
    section.removeAttribute('aria-busy');
  }
  timer = setInterval(tick, POLL_MS);
}

function login() {
  const email = h('input', { id: 'login-email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true, minlength: 1 });
  const logIn = async (ev) => {
    ev.preventDefault();
    try {
      const pair = await api('POST', '/api/v1/login', { body: { email: email.value, password: password.value } });
      session.setUser(pair.access_token, pair.refresh_token, email.value);
      password.value = '';
      go('keys');
    } catch (err) {
      showError(err);
    }
  };
  const signUp = async () => {
    try {
      await api('POST', '/api/v1/signup', { body: { email: email.value, password: password.value } });
      flash('Account created: log in.', 'ok');
      await logIn(new Event('submit'));
    } catch (err) {
      showError(err);
    }
  };
  const token = h('input', { id: 'admin-token', type: 'password', autocomplete: 'off', required: true });
  const operatorIn = async (ev) => {
    ev.preventDefault();
    session.setAdmin(token.value);
    token.value = '';
    try {
      await api('GET', '/admin/users?limit=1', { auth: 'admin' });
      go('networks');
    } catch (err) {
      session.clearAdmin();
      showError(err);
    }
  };
  return h(
    'div',
    { class: 'login' },
    session.hasUser()
      ? null
      : h(
          'form',
          { class: 'card', id: 'login-form', onsubmit: logIn },
          h('h2', {}, 'Merchant'),
          h('p', { class: 'muted' }, 'Your keys, resources and settlements.'),
          field('Email', email),
          field('Password', password),
          h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'login-submit' }, 'Log in'), h('button', { type: 'button', id: 'signup-submit', class: 'secondary', onclick: signUp }, 'Sign up')),
        ),
    session.hasAdmin()
      ? null
      : h(
          'form',
          { class: 'card', id: 'admin-form', onsubmit: operatorIn },
          h('h2', {}, 'Operator'),
          h('p', { class: 'muted' }, 'Networks, signers, fleet, settlements in flight, users.'),
          field('Admin token', token),
          h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'admin-submit' }, 'Enter')),
        ),
  );
}

function logout() {
  session.logout();
  stop();
  go('login');
  flash('Logged out.', 'ok');
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', tick);
  route();
});
