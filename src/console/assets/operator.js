// The operator's views (admin token): networks and their RPC endpoints, signers, the fleet,
// settlements in flight, users and their keys, assets.

import { api, query } from './api.js';
import { h, fill, field, sortableTable, badge, hexCell, when, units } from './dom.js';

/** `/api/v1/status`, and each (network, signer)'s lease holder from `/admin/fleet`. */
async function status() {
  return api('GET', '/api/v1/status');
}

export function networks(section) {
  const summary = h('div', { class: 'stats', id: 'system' });
  const nets = sortableTable(
    [
      { label: 'Network', value: (n) => n.network },
      { label: 'Status', value: (n) => n.status, cell: (n) => badge(n.status) },
      { label: 'Head', value: (n) => n.block },
      { label: 'Head age (s)', value: (n) => (n.blockAgeSeconds ?? Infinity), cell: (n) => (n.blockAgeSeconds === null ? '—' : String(n.blockAgeSeconds)) },
      { label: 'Endpoints up', value: (n) => n.rpc.filter((e) => e.status === 'healthy').length, cell: (n) => `${n.rpc.filter((e) => e.status === 'healthy').length} / ${n.rpc.length}` },
    ],
    { id: 'networks-table' },
  );
  const rpc = sortableTable(
    [
      { label: 'Network', value: (e) => e.network },
      { label: 'Endpoint', value: (e) => e.url, cell: (e) => h('code', {}, e.url) },
      { label: 'Health', value: (e) => e.status, cell: (e) => badge(e.status) },
      { label: 'Head', value: (e) => e.block ?? -1, cell: (e) => (e.block === null || e.block === undefined ? '—' : String(e.block)) },
      { label: 'Lag (blocks)', value: (e) => e.lag ?? Infinity, cell: (e) => (e.lag === null ? '—' : String(e.lag)) },
      { label: 'Latency (ms)', value: (e) => e.latencyMs ?? Infinity, cell: (e) => (e.latencyMs === null || e.latencyMs === undefined ? '—' : e.latencyMs.toFixed(1)) },
      { label: 'Requests', value: (e) => e.requests },
      { label: 'Errors', value: (e) => e.errors },
      { label: 'Last error', value: (e) => e.lastError || '', cell: (e) => h('span', { class: 'wrap' }, e.lastError || '—') },
    ],
    { id: 'rpc-table', rowKey: (e) => `${e.network}|${e.url}` },
  );
  section.append(summary, h('h2', {}, 'Networks'), nets.node, h('h2', {}, 'RPC endpoints'), rpc.node);
  async function refresh() {
    const st = await status();
    const stat = (label, value) => h('div', { class: 'stat' }, h('span', { class: 'muted' }, label), h('strong', {}, value));
    fill(summary, stat('System', st.status), stat('Database', `${st.database.backend} ${st.database.status}`), stat('Version', st.version), stat('Uptime', `${st.uptime} s`));
    nets.update(st.networks);
    const endpoints = [];
    for (const n of st.networks) {
      for (const e of n.rpc) endpoints.push({ ...e, network: n.network, lag: e.block === null || e.block === undefined ? null : Math.max(0, n.block - e.block) });
    }
    rpc.update(endpoints);
  }
  return { refresh };
}

export function signers(section) {
  const table = sortableTable(
    [
      { label: 'Network', value: (s) => s.network },
      { label: 'Signer', value: (s) => s.address, cell: (s) => hexCell(s.address) },
      { label: 'Balance', value: (s) => Number(s.balance ?? -1), cell: (s) => s.balance ?? '—' },
      { label: 'Floor', value: (s) => Number(s.floor ?? 0), cell: (s) => s.floor ?? '—' },
      { label: 'State', value: (s) => (s.belowFloor ? 0 : s.funded ? 2 : 1), cell: (s) => (s.belowFloor ? badge('below floor', 'below-floor') : s.funded ? badge('funded', 'ok') : badge('unfunded', 'failed')) },
      { label: 'Lease holder', value: (s) => s.holder || '', cell: (s) => (s.holder ? h('code', {}, s.holder, s.leased ? ' (this)' : '') : '—') },
      { label: 'In flight', value: (s) => s.inFlight },
    ],
    { id: 'signers-table', rowKey: (s) => `${s.network}|${s.address}` },
  );
  section.append(table.node);
  async function refresh() {
    const [st, fleet] = await Promise.all([status(), api('GET', '/admin/fleet', { auth: 'admin' })]);
    const holder = new Map(fleet.leases.filter((l) => l.held).map((l) => [`${l.network}|${l.signer.toLowerCase()}`, l.holder]));
    const rows = [];
    for (const n of st.networks) for (const s of n.signers || []) rows.push({ ...s, network: n.network, holder: holder.get(`${n.network}|${s.address.toLowerCase()}`) || null });
    table.update(rows);
  }
  return { refresh };
}

export function fleet(section) {
  const instances = sortableTable(
    [
      { label: 'Instance', value: (i) => i.id, cell: (i) => h('code', {}, i.id, i.this ? ' (this)' : '') },
      { label: 'Host', value: (i) => i.host },
      { label: 'PID', value: (i) => i.pid },
      { label: 'State', value: (i) => (i.live ? 1 : 0), cell: (i) => badge(i.live ? 'live' : 'dead', i.live ? 'ok' : 'failed') },
      { label: 'Started', value: (i) => i.startedAt, cell: (i) => when(i.startedAt) },
      { label: 'Heartbeat', value: (i) => i.heartbeatAt, cell: (i) => when(i.heartbeatAt) },
    ],
    { id: 'instances-table' },
  );
  const leases = sortableTable(
    [
      { label: 'Network', value: (l) => l.network },
      { label: 'Signer', value: (l) => l.signer, cell: (l) => hexCell(l.signer) },
      { label: 'Holder', value: (l) => l.holder, cell: (l) => h('code', {}, l.holder) },
      { label: 'Epoch', value: (l) => l.epoch },
      { label: 'Held', value: (l) => (l.held ? 1 : 0), cell: (l) => badge(l.held ? 'held' : 'expired', l.held ? 'ok' : 'failed') },
      { label: 'Expires', value: (l) => l.expiresAt, cell: (l) => when(l.expiresAt) },
    ],
    { id: 'leases-table' },
  );
  section.append(h('h2', {}, 'Instances'), instances.node, h('h2', {}, 'Signer leases'), leases.node);
  async function refresh() {
    const f = await api('GET', '/admin/fleet', { auth: 'admin' });
    instances.update(f.instances);
    leases.update(f.leases);
  }
  return { refresh };
}

const NEXT_STEP = {
  await_lease_holder: 'Wait: queued for the signer’s lease holder to send',
  await_claim: 'Wait: a claim in progress (failed if untouched for 60 s)',
  fail_unsent: 'Mark failed: nothing was sent',
  check_receipt: 'Look up the receipt: resolve if mined, watch if pending',
};

export function inflight(section) {
  let assets = null;
  const amount = (r) => {
    const a = assets && assets.find((x) => x.network === r.network && String(x.asset).toLowerCase() === String(r.asset).toLowerCase());
    return a ? `${units(r.amount, a.decimals)} ${a.symbol}` : `${r.amount} (atomic)`;
  };
  const table = sortableTable(
    [
      { label: 'Age (s)', value: (r) => r.ageSecs },
      { label: 'Status', value: (r) => r.status, cell: (r) => badge(r.status) },
      { label: 'Network', value: (r) => r.network },
      { label: 'Payer', value: (r) => r.payer, cell: (r) => hexCell(r.payer) },
      { label: 'Amount', value: (r) => Number(r.amount), cell: amount },
      { label: 'Transaction', value: (r) => r.transaction || '', cell: (r) => hexCell(r.transaction) },
      { label: 'Instance', value: (r) => r.instance || '', cell: (r) => (r.instance ? h('code', {}, r.instance) : '—') },
      { label: 'Next step', value: (r) => r.nextStep, cell: (r) => NEXT_STEP[r.nextStep] || r.nextStep },
    ],
    { id: 'inflight-table', empty: 'No settlement in flight.' },
  );
  section.append(h('p', { class: 'muted' }, 'Settlements whose outcome is not known yet, oldest first, with what the next reconciliation does.'), table.node);
  async function refresh() {
    if (!assets) assets = await api('GET', '/api/v1/assets');
    table.update(await api('GET', '/admin/settlements?limit=1000', { auth: 'admin' }));
  }
  return { refresh };
}

export function users(section, { flash, showError }) {
  let chosen = null;
  const detail = h('div', { id: 'user-detail' });
  const list = sortableTable(
    [
      { label: 'Id', value: (u) => u.id },
      { label: 'Email', value: (u) => u.email, cell: (u) => h('a', { href: '#/users', onclick: (ev) => { ev.preventDefault(); chosen = u.id; refreshDetail().catch(showError); } }, u.email) },
      { label: 'Admin', value: (u) => (u.is_admin ?? u.isAdmin ? 'yes' : 'no') },
      { label: 'Created', value: (u) => u.created_at || u.createdAt, cell: (u) => when(u.created_at || u.createdAt) },
    ],
    { id: 'users-table' },
  );
  const keys = sortableTable(
    [
      { label: 'Title', value: (k) => k.title },
      { label: 'Client id', value: (k) => k.clientId, cell: (k) => h('code', {}, k.clientId) },
      { label: 'Status', value: (k) => k.status, cell: (k) => badge(k.status) },
      { label: 'Credits', value: (k) => (k.settleCredits === null ? Infinity : k.settleCredits), cell: (k) => (k.settleCredits === null ? 'unlimited' : String(k.settleCredits)) },
      { label: 'Rate limit', value: (k) => (k.rateLimitPerSecond ?? 'default') },
      { label: 'Networks', value: (k) => (k.networks ? k.networks.join(', ') : 'all') },
      {
        label: 'Set credits / rate',
        cell: (k) => {
          const credits = h('input', { type: 'number', min: 0, placeholder: 'unlimited', class: 'small', 'aria-label': 'settle credits' });
          const rate = h('input', { type: 'number', min: 0, max: 1000000, placeholder: 'default', class: 'small', 'aria-label': 'requests per second' });
          return h(
            'form',
            {
              class: 'row-actions',
              onsubmit: async (ev) => {
                ev.preventDefault();
                // Empty means unlimited credits / the server's default rate.
                const body = {
                  settleCredits: credits.value === '' ? null : Number(credits.value),
                  rateLimitPerSecond: rate.value === '' ? null : Number(rate.value),
                };
                try {
                  await api('PATCH', `/admin/clients/${encodeURIComponent(k.clientId)}`, { auth: 'admin', body });
                  flash('Key limits set.', 'ok');
                  await refreshDetail();
                } catch (err) {
                  showError(err);
                }
              },
            },
            credits,
            rate,
            h('button', { type: 'submit', class: 'secondary' }, 'Set'),
          );
        },
      },
    ],
    { id: 'user-keys-table', empty: 'No keys.' },
  );
  section.append(list.node, detail);
  async function refreshDetail() {
    if (chosen === null) return;
    const [account, userKeys] = await Promise.all([api('GET', `/admin/users/${chosen}`, { auth: 'admin' }), api('GET', `/admin/users/${chosen}/clients?limit=1000`, { auth: 'admin' })]);
    const v = (x, none) => (x === null || x === undefined ? none : String(x));
    fill(
      detail,
      h('h2', {}, 'Account ', account.email),
      h(
        'div',
        { class: 'stats' },
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Settle credits'), h('strong', {}, v(account.settleCredits, 'unlimited'))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Rate limit'), h('strong', {}, v(account.rateLimitPerSecond, 'default'))),
        h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Gas budget left (wei)'), h('strong', {}, v(account.gasBudgetLeftWei, 'no budget'))),
        account.keys ? h('div', { class: 'stat' }, h('span', { class: 'muted' }, 'Keys'), h('strong', {}, `${account.keys.used} / ${account.keys.max}`)) : null,
      ),
      keys.node,
    );
    keys.update(userKeys);
  }
  async function refresh() {
    list.update(await api('GET', '/admin/users?limit=1000', { auth: 'admin' }));
    await refreshDetail();
  }
  return { refresh };
}

export function assets(section, { flash, showError }) {
  const network = h('input', { id: 'asset-network', placeholder: 'base-sepolia', required: true });
  const address = h('input', { id: 'asset-address', placeholder: '0x…', required: true });
  const symbol = h('input', { id: 'asset-symbol', placeholder: 'USDC', required: true });
  const decimals = h('input', { id: 'asset-decimals', type: 'number', min: 0, max: 255, value: 6 });
  const table = sortableTable(
    [
      { label: 'Network', value: (a) => a.network },
      { label: 'Symbol', value: (a) => a.symbol },
      { label: 'Address', value: (a) => a.address || a.asset, cell: (a) => hexCell(a.address || a.asset) },
      { label: 'Decimals', value: (a) => a.decimals },
      { label: 'Active', value: (a) => (a.active === false ? 'no' : 'yes') },
    ],
    { id: 'assets-table' },
  );
  const register = async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/admin/assets', { auth: 'admin', body: { network: network.value, asset: address.value, symbol: symbol.value, decimals: Number(decimals.value) } });
      flash('Asset registered.', 'ok');
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  section.append(
    h('form', { class: 'card', id: 'asset-form', onsubmit: register }, h('h2', {}, 'Register an asset'), h('div', { class: 'form-grid' }, field('Network', network), field('Token address', address), field('Symbol', symbol), field('Decimals', decimals)), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Register'))),
    table.node,
  );
  async function refresh() {
    table.update(await api('GET', `/api/v1/assets${query({})}`));
  }
  return { refresh };
}
