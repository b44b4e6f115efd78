// The merchant's views: keys, resources, settlements, charts. Each returns { refresh } that
// the app calls now and then (live updates) and that leaves forms being typed in alone.

import { api, query } from './api.js';
import { h, fill, field, sortableTable, badge, hexCell, units, when, confirmButton } from './dom.js';
import { barChart } from './charts.js';

/** v1 network names served, and assets by (network, address). Read once per view. */
async function catalogue() {
  const [networks, assets] = await Promise.all([api('GET', '/api/v1/networks'), api('GET', '/api/v1/assets')]);
  const names = [...new Set((networks.kinds || []).filter((k) => k.x402Version === 1).map((k) => k.network))];
  const byAddress = new Map();
  for (const a of assets || []) byAddress.set(`${a.network}|${String(a.address || a.asset || '').toLowerCase()}`, a);
  return { names, assets: assets || [], asset: (network, address) => byAddress.get(`${network}|${String(address).toLowerCase()}`) };
}

function amountOf(cat, network, asset, amount) {
  const a = cat && cat.asset(network, asset);
  return a ? `${units(amount, a.decimals)} ${a.symbol}` : `${amount} (atomic)`;
}

function tokenBox(id, clientId, token) {
  const box = h(
    'div',
    { class: 'token card', id: 'new-token' },
    h('h3', {}, 'Store this token now: it is shown only once.'),
    h('p', {}, 'Client id ', h('code', { id: 'new-token-client' }, clientId)),
    h('p', {}, 'Token ', h('code', { id: 'new-token-value', class: 'secret' }, token)),
    h('button', { type: 'button', onclick: () => box.remove() }, 'I stored it'),
  );
  return box;
}

export function keys(section, { flash, showError }) {
  let cat = null;
  const account = h('div', { class: 'stats', id: 'account' });
  const tokenSlot = h('div');
  const title = h('input', { id: 'key-title', maxlength: 200, required: true, placeholder: 'my-resource-server' });
  const verify = h('input', { type: 'checkbox', id: 'key-scope-verify', checked: true });
  const settle = h('input', { type: 'checkbox', id: 'key-scope-settle', checked: true });
  const networks = h('select', { id: 'key-networks', multiple: true, size: 3 });
  const ttl = h('input', { id: 'key-ttl', type: 'number', min: 1, max: 87600, placeholder: 'never expires' });
  const scopeOf = (v, s) => [v.checked ? 'verify' : null, s.checked ? 'settle' : null].filter(Boolean).join(',');
  const create = async (ev) => {
    ev.preventDefault();
    const chosen = [...networks.selectedOptions].map((o) => o.value);
    try {
      const body = { title: title.value, scope: scopeOf(verify, settle) };
      if (chosen.length) body.networks = chosen;
      if (ttl.value) body.ttl_hours = Number(ttl.value);
      const made = await api('POST', '/api/v1/clients', { auth: 'user', body });
      fill(tokenSlot, tokenBox('new-token', made.client.clientId, made.client.token));
      title.value = '';
      flash('Key created.', 'ok');
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  const change = async (id, body, done) => {
    try {
      const changed = await api('PATCH', `/api/v1/clients/${encodeURIComponent(id)}`, { auth: 'user', body });
      if (changed.client.token) fill(tokenSlot, tokenBox('new-token', changed.client.clientId, changed.client.token));
      flash(done, 'ok');
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  const edit = (k) => {
    const v = h('input', { type: 'checkbox', checked: k.scope.split(',').includes('verify') });
    const s = h('input', { type: 'checkbox', checked: k.scope.split(',').includes('settle') });
    const sel = h('select', { multiple: true, size: 3 }, (cat ? cat.names : []).map((n) => h('option', { value: n, selected: (k.networks || []).includes(n) }, n)));
    const form = h(
      'form',
      {
        class: 'card inline-edit',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const chosen = [...sel.selectedOptions].map((o) => o.value);
          await change(k.clientId, { scope: scopeOf(v, s), networks: chosen.length ? chosen : null }, 'Key changed.');
          form.remove();
        },
      },
      h('h3', {}, 'Edit ', k.title),
      h('div', { class: 'row' }, h('label', {}, v, ' verify'), h('label', {}, s, ' settle')),
      field('Networks (none selected: all)', sel),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', class: 'secondary', onclick: () => form.remove() }, 'Cancel')),
    );
    fill(tokenSlot, form);
  };
  const table = sortableTable(
    [
      { label: 'Title', value: (k) => k.title, cell: (k) => h('span', { class: 'key-title' }, k.title) },
      { label: 'Client id', value: (k) => k.clientId, cell: (k) => h('code', {}, k.clientId) },
      { label: 'Status', value: (k) => k.status, cell: (k) => badge(k.status) },
      { label: 'Scope', value: (k) => k.scope },
      { label: 'Networks', value: (k) => (k.networks ? k.networks.join(', ') : 'all') },
      { label: 'Credits', value: (k) => (k.settleCredits === null ? Infinity : k.settleCredits), cell: (k) => (k.settleCredits === null ? 'unlimited' : String(k.settleCredits)) },
      { label: 'Rate limit', value: (k) => (k.rateLimitPerSecond === null || k.rateLimitPerSecond === undefined ? 'default' : k.rateLimitPerSecond === 0 ? 'unlimited' : `${k.rateLimitPerSecond}/s`) },
      { label: 'Gas today', value: (k) => Number((k.gasToday && k.gasToday.gasUsed) || 0) },
      { label: 'Created', value: (k) => k.createdAt, cell: (k) => when(k.createdAt) },
      { label: 'Expires', value: (k) => k.expiresAt || '', cell: (k) => when(k.expiresAt) },
      {
        label: 'Actions',
        cell: (k) =>
          h(
            'div',
            { class: 'row-actions' },
            k.status === 'active'
              ? h('button', { type: 'button', class: 'pause', onclick: () => change(k.clientId, { status: 'paused' }, 'Key paused.') }, 'Pause')
              : k.status === 'paused'
                ? h('button', { type: 'button', class: 'resume', onclick: () => change(k.clientId, { status: 'active' }, 'Key resumed.') }, 'Resume')
                : null,
            h('button', { type: 'button', class: 'secondary', onclick: () => edit(k) }, 'Edit'),
            confirmButton('Rotate', 'Confirm rotate', () => change(k.clientId, { rotate: true }, 'Token rotated.'), { class: 'secondary rotate' }),
            confirmButton(
              'Revoke',
              'Confirm revoke',
              async () => {
                try {
                  await api('DELETE', `/api/v1/clients/${encodeURIComponent(k.clientId)}`, { auth: 'user' });
                  flash('Key revoked.', 'ok');
                  await refresh();
                } catch (err) {
                  showError(err);
                }
              },
              { class: 'secondary revoke' },
            ),
          ),
      },
    ],
    { id: 'keys-table', empty: 'No keys yet: create one above.', rowKey: (k) => k.clientId },
  );
  section.append(
    account,
    h(
      'form',
      { class: 'card', id: 'key-form', onsubmit: create },
      h('h2', {}, 'New key'),
      h('div', { class: 'form-grid' }, field('Title', title), h('fieldset', {}, h('legend', {}, 'Scope'), h('label', {}, verify, ' verify'), h('label', {}, settle, ' settle')), field('Networks (none selected: all)', networks), field('Expires after (hours)', ttl)),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'key-create' }, 'Create key')),
    ),
    tokenSlot,
    table.node,
  );
  async function refresh() {
    if (!cat) {
      cat = await catalogue();
      fill(networks, cat.names.map((n) => h('option', { value: n }, n)));
    }
    const [me, list] = await Promise.all([api('GET', '/api/v1/users/me', { auth: 'user' }), api('GET', '/api/v1/clients?limit=100', { auth: 'user' })]);
    const allowance = me.settleCredits !== undefined ? me : me.allowance || me;
    const stat = (label, value, id) => h('div', { class: 'stat', id }, h('span', { class: 'muted' }, label), h('strong', {}, value));
    fill(
      account,
      stat('Account', me.email || ''),
      stat('Settle credits left', allowance.settleCredits === null || allowance.settleCredits === undefined ? 'unlimited' : String(allowance.settleCredits), 'credits-left'),
      stat('Rate limit', allowance.rateLimitPerSecond === null || allowance.rateLimitPerSecond === undefined ? 'default' : allowance.rateLimitPerSecond === 0 ? 'unlimited' : `${allowance.rateLimitPerSecond}/s`),
      stat('Gas budget left today', allowance.gasBudgetLeftWei === null || allowance.gasBudgetLeftWei === undefined ? 'no budget' : `${units(allowance.gasBudgetLeftWei, 18)} native`, 'budget-left'),
      me.keys ? stat('Keys', `${me.keys.used} of ${me.keys.max}`) : null,
    );
    table.update(list);
  }
  return { refresh };
}

const ACCEPTS_TEMPLATE = (network) =>
  JSON.stringify(
    [{ scheme: 'exact', network: network || 'base-sepolia', maxAmountRequired: '10000', payTo: '0x0000000000000000000000000000000000000000', asset: '0x0000000000000000000000000000000000000000' }],
    null,
    2,
  );

export function resources(section, { flash, showError }) {
  let editing = null;
  const url = h('input', { id: 'resource-url', required: true, maxlength: 2048, placeholder: '/api/premium-data, or a full URL' });
  const kind = h('input', { id: 'resource-type', value: 'http' });
  const version = h('select', { id: 'resource-version' }, h('option', { value: '1' }, 'x402 v1'), h('option', { value: '2' }, 'x402 v2'));
  const title = h('input', { id: 'resource-title', maxlength: 200 });
  const description = h('input', { id: 'resource-description', maxlength: 1000 });
  const accepts = h('textarea', { id: 'resource-accepts', rows: 7, spellcheck: 'false' });
  accepts.value = ACCEPTS_TEMPLATE();
  const heading = h('h2', {}, 'Register a resource');
  const submit = h('button', { type: 'submit', id: 'resource-save' }, 'Register');
  const reset = () => {
    editing = null;
    heading.textContent = 'Register a resource';
    submit.textContent = 'Register';
    url.value = '';
    title.value = '';
    description.value = '';
  };
  const save = async (ev) => {
    ev.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(accepts.value);
    } catch {
      showError(new Error('accepts must be JSON'));
      return;
    }
    const metadata = {};
    if (title.value) metadata.title = title.value;
    if (description.value) metadata.description = description.value;
    const body = { resource: url.value, type: kind.value || 'http', x402Version: Number(version.value), accepts: parsed, metadata };
    try {
      if (editing) await api('PUT', `/api/v1/resources/${editing}`, { auth: 'user', body });
      else await api('POST', '/api/v1/resources', { auth: 'user', body });
      flash(editing ? 'Resource saved.' : 'Resource registered.', 'ok');
      reset();
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  const metaOf = (r) => r.metadata || {};
  const table = sortableTable(
    [
      { label: 'Title', value: (r) => metaOf(r).title || '', cell: (r) => h('span', { class: 'resource-title' }, metaOf(r).title || '—') },
      { label: 'Resource', value: (r) => r.resource, cell: (r) => h('span', { class: 'resource-url' }, r.resource) },
      { label: 'Type', value: (r) => r.type || '' },
      { label: 'Version', value: (r) => r.x402Version },
      { label: 'Networks', value: (r) => [...new Set((r.accepts || []).map((a) => a.network))].join(', ') },
      { label: 'Description', value: (r) => metaOf(r).description || '' },
      { label: 'Updated', value: (r) => r.lastUpdated || '', cell: (r) => when(r.lastUpdated) },
      {
        label: 'Actions',
        cell: (r) =>
          h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              onclick: () => {
                editing = r.id;
                heading.textContent = 'Edit resource';
                submit.textContent = 'Save';
                url.value = r.resource;
                kind.value = r.type || 'http';
                version.value = String(r.x402Version || 1);
                title.value = metaOf(r).title || '';
                description.value = metaOf(r).description || '';
                accepts.value = JSON.stringify(r.accepts || [], null, 2);
                url.focus();
              },
            },
            'Edit',
          ),
      },
    ],
    { id: 'resources-table', empty: 'No resources registered.' },
  );
  section.append(
    h(
      'form',
      { class: 'card', id: 'resource-form', onsubmit: save },
      heading,
      h('div', { class: 'form-grid' }, field('URL', url), field('Type', kind), field('Version', version), field('Title', title), field('Description', description)),
      field('Accepts (x402 payment requirements, JSON)', accepts),
      h('div', { class: 'actions' }, submit, h('button', { type: 'button', class: 'secondary', onclick: reset }, 'Clear')),
    ),
    table.node,
  );
  async function refresh() {
    const list = await api('GET', '/api/v1/users/resources?limit=1000', { auth: 'user' });
    table.update(list.resources || []);
  }
  return { refresh };
}

export function settlements(section, { showError }) {
  let cat = null;
  let filter = {};
  const tx = h('input', { id: 'search-tx', placeholder: '0x… transaction hash', spellcheck: 'false' });
  const payer = h('input', { id: 'search-payer', placeholder: '0x… payer', spellcheck: 'false' });
  const nonce = h('input', { id: 'search-nonce', placeholder: '0x… authorization nonce', spellcheck: 'false' });
  const count = h('p', { class: 'muted', id: 'settlements-count' });
  const table = sortableTable(
    [
      { label: 'When', value: (r) => r.createdAt, cell: (r) => when(r.createdAt) },
      { label: 'Status', value: (r) => r.status, cell: (r) => badge(r.status) },
      { label: 'Amount', value: (r) => Number(r.amount), cell: (r) => amountOf(cat, r.network, r.asset, r.amount) },
      { label: 'Network', value: (r) => r.network },
      { label: 'Payer', value: (r) => r.payer, cell: (r) => hexCell(r.payer) },
      {
        label: 'Transaction',
        value: (r) => r.transaction || '',
        cell: (r) =>
          r.transaction
            ? r.explorerUrl
              ? h('a', { href: r.explorerUrl, target: '_blank', rel: 'noopener noreferrer', class: 'tx', title: r.transaction }, h('code', {}, r.transaction.slice(0, 10), '…'))
              : h('code', { class: 'tx', title: r.transaction }, r.transaction.slice(0, 10), '…')
            : '—',
      },
      { label: 'Block', value: (r) => r.blockNumber || 0, cell: (r) => (r.blockNumber ? String(r.blockNumber) : '—') },
      { label: 'Key', value: (r) => r.clientId, cell: (r) => h('code', {}, r.clientId) },
      { label: 'Reason', value: (r) => r.errorReason || '' },
    ],
    { id: 'settlements-table', empty: 'No settlements.', rowKey: (r) => r.transaction || r.nonce },
  );
  const search = async (ev) => {
    ev.preventDefault();
    filter = { tx: tx.value, payer: payer.value, nonce: nonce.value };
    try {
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  section.append(
    h(
      'form',
      { class: 'card search', id: 'settlement-search', onsubmit: search },
      h('div', { class: 'form-grid' }, field('Transaction', tx), field('Payer', payer), field('Nonce', nonce)),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', id: 'search-submit' }, 'Search'),
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () => {
              tx.value = payer.value = nonce.value = '';
              filter = {};
              refresh().catch(showError);
            },
          },
          'Show all',
        ),
      ),
    ),
    count,
    table.node,
  );
  async function refresh() {
    if (!cat) cat = await catalogue();
    const rows = await api('GET', `/api/v1/users/settlements${query({ ...filter, limit: 200 })}`, { auth: 'user' });
    count.textContent = `${rows.length} settlement${rows.length === 1 ? '' : 's'}${Object.values(filter).some(Boolean) ? ' found' : ''} · updated ${new Date().toLocaleTimeString()}`;
    table.update(rows);
  }
  return { refresh };
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

/** Per (network, asset): settled count and volume by period. */
function series(periods, label, cat) {
  const out = new Map();
  for (const p of periods) {
    for (const a of p.amounts || []) {
      const key = `${a.network}|${a.asset}`;
      if (!out.has(key)) {
        const meta = cat.asset(a.network, a.asset);
        out.set(key, { network: a.network, asset: a.asset, symbol: meta ? meta.symbol : a.asset, decimals: meta ? meta.decimals : 0, points: new Map() });
      }
      out.get(key).points.set(label(p), { count: a.settlements, amount: a.amount });
    }
  }
  return [...out.values()];
}

export function charts(section) {
  let cat = null;
  const daily = h('div', { class: 'charts', id: 'charts-daily' });
  const monthly = h('div', { class: 'charts', id: 'charts-monthly' });
  section.append(h('h2', {}, 'Per day (last 30 days)'), daily, h('h2', {}, 'Per month (last 12 months)'), monthly);
  function draw(target, periods, labelOf, labels) {
    const all = series(periods, labelOf, cat);
    if (!all.length) {
      fill(target, h('p', { class: 'muted' }, 'Nothing settled in this range.'));
      return;
    }
    fill(
      target,
      all.map((s) =>
        h(
          'figure',
          { class: 'card chart' },
          h('figcaption', {}, `${s.network} · ${s.symbol}`),
          h(
            'div',
            { class: 'chart-pair' },
            barChart({ title: 'Settled (count)', labels, values: labels.map((l) => (s.points.get(l) ? s.points.get(l).count : 0)), format: (v) => String(v) }),
            barChart({
              title: `Volume (${s.symbol})`,
              labels,
              values: labels.map((l) => (s.points.get(l) ? Number(units(s.points.get(l).amount, s.decimals)) : 0)),
              format: (v) => String(Math.round(v * 1e6) / 1e6),
            }),
          ),
        ),
      ),
    );
  }
  async function refresh() {
    if (!cat) cat = await catalogue();
    const now = new Date();
    const from = new Date(now.getTime() - 29 * 86400000);
    const days = [];
    for (let d = new Date(from); d <= now; d = new Date(d.getTime() + 86400000)) days.push(isoDay(d));
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1));
    const months = [];
    for (let i = 0; i < 12; i++) months.push(new Date(Date.UTC(monthStart.getUTCFullYear(), monthStart.getUTCMonth() + i, 1)).toISOString().slice(0, 7));
    const [d, m] = await Promise.all([
      api('GET', `/api/v1/x402-metrics/daily${query({ from: days[0], to: isoDay(now) })}`, { auth: 'user' }),
      api('GET', `/api/v1/x402-metrics/monthly${query({ from: isoDay(monthStart), to: isoDay(now) })}`, { auth: 'user' }),
    ]);
    draw(daily, d.days || [], (p) => String(p.date), days);
    draw(monthly, m.months || [], (p) => String(p.month), months);
  }
  // The reports are sums flushed now and then: no need to ask every two seconds.
  return { refresh, every: 15000 };
}
