// Building the page: every value goes in as text (`textContent`, attributes set one by one),
// never as markup, so a title holding `<script>` shows as those characters.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      node.textContent = String(value);
    } else if (name === 'href') {
      const href = safeHref(value);
      if (href) node.setAttribute('href', href);
    } else if (name === 'value' && 'value' in node) {
      node.value = String(value);
    } else if (name === 'checked' || name === 'disabled' || name === 'selected' || name === 'hidden') {
      node[name] = Boolean(value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  return node;
}

/** `h('p', {class: 'x'}, 'text', child)`: an element, its children as text or nodes. */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Only http(s) and same-page links; anything else (`javascript:`, `data:`) is dropped. */
export function safeHref(value) {
  const v = String(value);
  if (v.startsWith('#') || v.startsWith('/')) return v.startsWith('//') ? null : v;
  try {
    const url = new URL(v);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A short form of a long hex string: 0x1234…abcd (the whole in the title). */
export function short(hex) {
  if (!hex) return '';
  const v = String(hex);
  return v.length > 14 ? `${v.slice(0, 8)}…${v.slice(-6)}` : v;
}

export function hexCell(hex) {
  return hex ? h('code', { title: hex }, short(hex)) : '—';
}

/** An atomic amount with `decimals` as a decimal string (no float rounding). */
export function units(amount, decimals) {
  const raw = String(amount ?? '0');
  if (!/^\d+$/.test(raw) || !decimals) return raw;
  const padded = raw.padStart(decimals + 1, '0');
  const whole = padded.slice(0, padded.length - decimals);
  const frac = padded.slice(padded.length - decimals).replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : whole;
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').slice(0, 19);
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || String(text).toLowerCase().replace(/[^a-z_-]/g, '')}` }, text);
}

/**
 * A table that sorts by any column (click its header; again to reverse). `columns`: {label,
 * value(row) for sorting, cell(row) to show (text or node; default the value)}. The sort is
 * kept across `update(rows)`, so live updates do not reset it.
 */
export function sortableTable(columns, { id, empty = 'Nothing yet.', rowKey } = {}) {
  let rows = [];
  let sortBy = -1;
  let asc = true;
  const thead = h('thead');
  const tbody = h('tbody');
  const table = h('table', { class: 'grid', id }, thead, tbody);
  const wrap = h('div', { class: 'table-wrap' }, table);

  function header() {
    fill(
      thead,
      h(
        'tr',
        {},
        columns.map((col, i) =>
          h(
            'th',
            { scope: 'col', 'aria-sort': i === sortBy ? (asc ? 'ascending' : 'descending') : null },
            col.value
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'sort',
                    onclick: () => {
                      asc = sortBy === i ? !asc : true;
                      sortBy = i;
                      render();
                    },
                  },
                  col.label,
                  i === sortBy ? (asc ? ' ▲' : ' ▼') : '',
                )
              : col.label,
          ),
        ),
      ),
    );
  }

  function render() {
    header();
    let shown = rows.slice();
    if (sortBy >= 0) {
      const key = columns[sortBy].value;
      shown.sort((a, b) => {
        const x = key(a);
        const y = key(b);
        const c =
          typeof x === 'number' && typeof y === 'number'
            ? x - y
            : String(x ?? '').localeCompare(String(y ?? ''), undefined, { numeric: true });
        return asc ? c : -c;
      });
    }
    if (!shown.length) {
      fill(tbody, h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, empty)));
      return;
    }
    fill(
      tbody,
      shown.map((row) =>
        h(
          'tr',
          { 'data-key': rowKey ? rowKey(row) : null },
          columns.map((col) => {
            const v = col.cell ? col.cell(row) : col.value(row);
            return h('td', { 'data-label': col.label }, v ?? '—');
          }),
        ),
      ),
    );
  }

  // A live update waits while someone types in the table (a row's own form).
  let held = false;
  const typing = () => {
    const active = document.activeElement;
    return Boolean(active && wrap.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  };
  wrap.addEventListener('focusout', () =>
    setTimeout(() => {
      if (held && !wrap.contains(document.activeElement)) {
        held = false;
        render();
      }
    }, 0),
  );
  render();
  return {
    node: wrap,
    update(next) {
      rows = next || [];
      held = typing();
      if (!held) render();
    },
  };
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', {}, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

/** A button that asks once more before it acts (no blocking dialogs). */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = false;
  const button = h('button', {
    type: 'button',
    ...attrs,
    onclick: async () => {
      if (!armed) {
        armed = true;
        button.textContent = confirmLabel;
        button.classList.add('danger');
        return;
      }
      button.disabled = true;
      try {
        await action();
      } finally {
        button.disabled = false;
      }
    },
  }, label);
  return button;
}
