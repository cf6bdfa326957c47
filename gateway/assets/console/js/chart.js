// A small time-series line chart drawn as inline SVG: a fixed time window ending now, a y axis
// from zero to a rounded maximum, grid lines, and one path per series (gaps where a value is
// missing). The SVG is an image to assistive technology, labelled with the latest values.

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 220;
const M = { left: 52, right: 12, top: 12, bottom: 26 };

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The smallest of 1, 2, 2.5, 5 × 10^k at or above `v` (at least `floor`). */
export function niceMax(v, floor = 1) {
  const x = Math.max(v, floor);
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function shortNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

/**
 * Draws `series` ([{name, className, points: [[t_ms, value|null], …]}]) over the `windowMs`
 * ending at `endMs`. `label` names the chart; `summary` is read out instead of the drawing.
 */
export function lineChart({ label, summary, series, endMs, windowMs, yFloor = 1 }) {
  const startMs = endMs - windowMs;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${label}: ${summary}`, preserveAspectRatio: 'xMidYMid meet' });
  svg.append(el('title', {}, `${label}: ${summary}`));
  let max = 0;
  for (const s of series) for (const [t, v] of s.points) if (t >= startMs && v !== null && v > max) max = v;
  const top = niceMax(max, yFloor);
  const x = (t) => M.left + ((t - startMs) / windowMs) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - (v / top) * (H - M.top - M.bottom);
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    svg.append(el('line', { class: i === 0 ? 'axis' : 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    svg.append(el('text', { class: 'tick', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, shortNumber(v)));
  }
  const stepS = windowMs <= 120000 ? 15 : windowMs <= 300000 ? 60 : 120;
  for (let back = 0; back * 1000 <= windowMs; back += stepS) {
    const t = endMs - back * 1000;
    const text = back === 0 ? '0' : back % 60 === 0 ? `−${back / 60} min` : `−${back} s`;
    svg.append(el('line', { class: 'grid', x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom }));
    svg.append(el('text', { class: 'tick', x: x(t), y: H - 8, 'text-anchor': back === 0 ? 'end' : 'middle' }, text));
  }
  svg.append(el('line', { class: 'axis', x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  for (const s of series) {
    let d = '';
    let pen = false;
    for (const [t, v] of s.points) {
      if (t < startMs || v === null || v === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) svg.append(el('path', { class: `series ${s.className}`, d, 'data-series': s.name }));
  }
  return svg;
}
