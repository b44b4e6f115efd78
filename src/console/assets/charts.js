// Bar charts drawn as SVG by hand: a few rectangles and labels, sized by the viewBox so they
// fit any width. Values go in as text nodes and attributes only.

import { s, h } from './dom.js';

const W = 640;
const H = 180;
const PAD = { top: 14, right: 8, bottom: 26, left: 48 };

function nice(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** `{title, labels, values, format}` → a figure with an SVG bar chart. */
export function barChart({ title, labels, values, format = String }) {
  const top = nice(Math.max(0, ...values));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const step = innerW / Math.max(1, labels.length);
  const bar = Math.max(1, step * 0.7);
  const y = (v) => PAD.top + innerH - (v / top) * innerH;
  const every = Math.ceil(labels.length / 8);
  const svg = s(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'bars', preserveAspectRatio: 'xMidYMid meet' },
    s('title', {}, title),
    [0, 0.5, 1].map((f) =>
      s(
        'g',
        { class: 'gridline' },
        s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f) }),
        s('text', { x: PAD.left - 6, y: y(top * f) + 4, 'text-anchor': 'end' }, format(top * f)),
      ),
    ),
    values.map((v, i) =>
      s(
        'rect',
        { class: 'bar', x: PAD.left + i * step + (step - bar) / 2, y: y(v), width: bar, height: Math.max(0, PAD.top + innerH - y(v)), 'data-value': v },
        s('title', {}, `${labels[i]}: ${format(v)}`),
      ),
    ),
    labels.map((l, i) =>
      i % every === 0 ? s('text', { class: 'xlabel', x: PAD.left + i * step + step / 2, y: H - 8, 'text-anchor': 'middle' }, l.length > 7 ? l.slice(5) : l) : null,
    ),
  );
  return h('div', { class: 'chart-box' }, h('h4', {}, title), svg);
}
