// Small DOM helpers: element building, labelled fields, and the API's errors shown on the field
// they name (`error.field`, a JSON path) with a summary at the top of the form that links there.

import { tr } from './i18n.js';

/** `h('p', {class: 'x', onclick: f}, 'text', child)`: an element with attributes and children. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let nextId = 0;
/** A fresh element id. */
export function uid(prefix = 'f') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * A labelled field. `input` is the control (an element); `field` the API's JSON path it
 * answers for (errors naming it, or a path under it, are shown here); `hint` text under the label.
 */
export function field({ label, input, hint, field: path, className }) {
  const id = input.id || uid('in');
  input.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const box = h('div', { class: `field ${className || ''}`.trim(), 'data-field': path || '' },
    h('label', { for: id }, label),
    hint ? h('span', { class: 'hint', id: hintId }, hint) : null,
    input);
  return box;
}

/** Removes every error shown in `form` (fields and summary). */
export function clearErrors(form) {
  form.querySelectorAll('.field.has-error').forEach((f) => {
    f.classList.remove('has-error');
    f.querySelectorAll('.field-error').forEach((e) => e.remove());
    f.querySelectorAll('[aria-invalid]').forEach((i) => {
      i.removeAttribute('aria-invalid');
      const ids = (i.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.endsWith('-error'));
      if (ids.length) i.setAttribute('aria-describedby', ids.join(' '));
      else i.removeAttribute('aria-describedby');
    });
  });
  form.querySelectorAll(':scope > .error-summary').forEach((s) => s.remove());
}

/** The field box in `form` answering for the API path `path`: exact, then ever shorter parents. */
export function fieldFor(form, path) {
  let p = path || '';
  while (p) {
    const box = form.querySelector(`.field[data-field="${CSS.escape(p)}"]`);
    if (box) return box;
    const shorter = p.replace(/(\[\d+\]|\.[^.[\]]*)$/, '');
    if (shorter === p) break;
    p = shorter;
  }
  return null;
}

/** The human text of an API error, in the console's words where the code is known. */
export function errorText(err) {
  const msg = err.message || '';
  switch (err.code) {
    case 'network': return tr(`无法连接网关：${msg}`, `The gateway cannot be reached: ${msg}`);
    case 'unauthorized': return tr('操作员令牌无效或已过期。', 'The operator token is wrong or expired.');
    case 'forbidden': return tr(`无权操作：${msg}`, `Not allowed: ${msg}`);
    case 'not_found': return tr(`未找到：${msg}`, `Not found: ${msg}`);
    case 'unavailable': return tr(`暂不可用，未作任何更改：${msg}`, `Unavailable, nothing was changed: ${msg}`);
    case 'payload_too_large': return tr('文件过大（上限 16 MiB）。', 'The file is too large (16 MiB at most).');
    default: return msg;
  }
}

/**
 * Shows an API error in `form`: on the field it names (message beside the control, the control
 * marked invalid) and in a summary at the top linking to that field. Focuses the summary.
 */
export function showError(form, err) {
  clearErrors(form);
  const text = errorText(err);
  const box = fieldFor(form, err.field);
  let target = null;
  if (box) {
    const control = box.querySelector('input, textarea, select');
    const errId = `${control ? control.id : uid('e')}-error`;
    box.classList.add('has-error');
    const label = box.querySelector('label, .label, legend');
    const msg = h('span', { class: 'field-error', id: errId },
      h('span', { class: 'visually-hidden' }, tr('错误：', 'Error: ')), text);
    if (label) label.after(msg);
    else box.prepend(msg);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      const ids = (control.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      control.setAttribute('aria-describedby', [...ids, errId].join(' '));
      target = control;
    }
  }
  const link = target
    ? h('a', { href: `#${target.id}`, onclick: (e) => { e.preventDefault(); target.focus(); } }, text)
    : text;
  const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1' },
    h('h2', {}, tr('请更正以下问题', 'There is a problem')),
    h('ul', {}, h('li', {}, link)),
    err.field && !box ? h('p', { class: 'hint' }, `field: ${err.field}`) : null);
  const heading = form.querySelector(':scope > h2');
  if (heading) heading.after(summary);
  else form.prepend(summary);
  summary.focus();
}

/** A passing message for the screen reader and the eye, bottom right. */
export function toast(text) {
  const region = document.getElementById('toast');
  if (!region) return;
  const item = h('div', {}, text);
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** A table: `columns` = [{label, num?}], `rows` = arrays of cells (text or nodes). */
export function table({ caption, columns, rows, empty, rowClass }) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || tr('暂无记录。', 'Nothing here yet.'));
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
      h('tbody', {}, rows.map((cells, i) => h('tr', { class: rowClass ? rowClass(i) : null },
        cells.map((cell, j) => h('td', { class: columns[j]?.num ? 'num' : null }, cell)))))));
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Runs `work` with `button` disabled and busy; restores it afterwards. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
