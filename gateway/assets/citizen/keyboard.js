// The virtual plate keyboard (R4.5, I8): every serial character as a key; a key is enabled only
// while some available number of the vehicle's class continues the characters already entered,
// as `GET /v1/applications/{id}/keyboard?entered=…` says after each character. Nothing else can
// be typed: the physical keyboard types the same keys, through the same check.

import { get } from './api.js';
import { h } from './dom.js';
import { t } from './i18n.js';

/** Serial characters (R2.3): digits, then letters without I and O. */
export const CHARS = '0123456789ABCDEFGHJKLMNPQRSTUVWXYZ'.split('');

/**
 * `onType(ch)` / `onBackspace()` / `onClear()` are called for accepted keys. `refresh(entered)`
 * asks the server for the keys of the next position; answers the position count.
 */
export function createKeyboard(appId, { onType, onBackspace, onClear }) {
  let enabled = new Set();
  let seq = 0;
  // Keys typed while the server is still answering for the previous one: tried in order once
  // it has answered (a person typing fast loses nothing, and still types only enabled keys).
  let loading = false;
  const queue = [];
  let length = null;
  const keys = new Map();
  const rows = [CHARS.slice(0, 10), CHARS.slice(10, 22), CHARS.slice(22)];
  const grid = h('div', { class: 'keyboard', role: 'group', 'aria-label': t('keyboard'), id: 'keyboard' },
    rows.map((row) => h('div', { class: 'key-row' }, row.map((c) => {
      const key = h('button', { type: 'button', class: 'key', 'data-key': c, disabled: true }, c);
      key.addEventListener('click', () => press(c));
      keys.set(c, key);
      return key;
    }))),
    h('div', { class: 'key-row' },
      h('button', { type: 'button', class: 'key wide', id: 'key-backspace', onclick: () => onBackspace() }, t('key_backspace')),
      h('button', { type: 'button', class: 'key wide', id: 'key-clear', onclick: () => onClear() }, t('key_clear'))),
    h('p', { class: 'hint' }, t('key_disabled_hint')));

  function press(c) {
    if (loading) queue.push(c);
    else if (enabled.has(c)) onType(c);
  }

  function show() {
    for (const [c, key] of keys) {
      const on = enabled.has(c);
      key.disabled = !on;
      key.classList.toggle('on', on);
    }
  }

  /** Fetches the keys for `entered` (a complete serial enables nothing). */
  async function refresh(entered) {
    const mine = ++seq;
    enabled = new Set();
    loading = true;
    show();
    let data;
    try {
      ({ data } = await get(`/v1/applications/${encodeURIComponent(appId)}/keyboard?entered=${encodeURIComponent(entered)}`));
    } finally {
      if (mine === seq) loading = false;
    }
    if (mine !== seq) return length;
    length = data.length;
    const next = data.positions[entered.length];
    enabled = new Set(next ? next.enabled.split('') : []);
    show();
    grid.dataset.entered = entered;
    grid.dataset.ready = '1';
    if (queue.length) setTimeout(() => press(queue.shift()), 0);
    return length;
  }

  /** The physical keyboard: letters and digits through the same rule, Backspace, Delete. */
  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return false;
    if (ev.key === 'Backspace') { queue.length = 0; onBackspace(); return true; }
    if (ev.key === 'Delete') { queue.length = 0; onClear(); return true; }
    const c = ev.key.length === 1 ? ev.key.toUpperCase() : '';
    if (CHARS.includes(c)) { press(c); return true; }
    return false;
  }

  return { element: grid, refresh, onKey, enabledKeys: () => [...enabled].join('') };
}
