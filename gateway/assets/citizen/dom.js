// Small DOM helpers: elements built from data (never HTML strings, so nothing the API returns
// can inject markup), screen-reader announcements, field errors, and modal dialogs.

/** `h('button', {class: 'x', onclick: f}, 'text', child…)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let announceTimer = null;

/** Tells screen readers something that matters now (sparingly: never every second). */
export function announce(text) {
  const region = document.getElementById('announce');
  if (!region) return;
  region.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { region.textContent = text; }, 50);
}

/** Shows `message` under the field `input` (aria-invalid, aria-describedby), or clears it. */
export function fieldError(input, message) {
  const id = input.id + '-error';
  let box = document.getElementById(id);
  if (!message) {
    input.removeAttribute('aria-invalid');
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = h('p', { id, class: 'field-error' });
    const host = input.closest('.field');
    if (host) host.append(box); else input.after(box);
  }
  box.textContent = message;
  input.setAttribute('aria-invalid', 'true');
  const described = new Set((input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean));
  described.add(id);
  input.setAttribute('aria-describedby', [...described].join(' '));
}

/** A labelled input in a `.field` wrapper. */
export function field({ id, label, hint, type = 'text', attrs = {}, extra = null }) {
  const input = h('input', { id, name: id, type, 'aria-describedby': hint ? id + '-hint' : null, ...attrs });
  return h('div', { class: 'field' },
    h('div', { class: 'label-row' }, h('label', { for: id }, label), extra),
    hint ? h('p', { id: id + '-hint', class: 'hint' }, hint) : null,
    input);
}

/** A modal dialog (the native <dialog>: focus is kept inside, Esc closes). */
export function dialog(title, body, actions) {
  const titleId = 'dlg-' + Math.random().toString(36).slice(2);
  const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
    h('h2', { id: titleId }, title), body, h('div', { class: 'actions' }, actions));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

/** A banner at the top of the screen for an error or a notice. */
export function banner(kind, text) {
  return h('div', { class: `banner ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}
