// Stage 2 (R4.4–R4.7): identity by SMS, then the selection with its two tabs.
// 自编: up to custom_per_check numbers typed on the virtual keyboard, in preference order; the
// confirm button counts the interval down; a failed check shows each number's reason; when the
// custom quota is spent the page moves to 随机. 随机: 随机一次(n) / 换一批(n) with 不包含4, ten
// numbers that expire ("距失效XX秒"), one kept per batch into 备选 with its own countdown, and
// 确认选号 on a candidate.

import { post } from './api.js';
import { h, banner, announce } from './dom.js';
import { t, errorText } from './i18n.js';
import { allowedAt, expiresAt, left, secondsToExpiry, secondsToWait, tick } from './timing.js';
import { smsBlock } from './sms.js';
import { createKeyboard } from './keyboard.js';
import { ctx, render, errorBanner, loadApp, showDone, showExhausted, showApplication } from './app.js';

const appPath = (suffix = '') => `/v1/applications/${encodeURIComponent(ctx.app.id)}${suffix}`;

/** Stage 2 step 1: a fresh SMS code to the application's phone (R4.4). */
export function showIdentity() {
  const block = smsBlock({
    id: 'identity',
    send: () => post('/v1/sms', { purpose: 'identity', application: ctx.app.id }, { idempotent: true }),
    submit: async (code) => {
      await post(appPath('/identity'), { sms_code: code }, { idempotent: true });
      await loadApp(ctx.app.id);
      showSelection();
    },
  });
  render([2, 1], t('step_identity'), h('p', {}, t('identity_text', { phone: '' })), block);
  ctx.rerender = showIdentity;
}

/** What the selection screen keeps between renders. */
const sel = { tab: 'custom', notice: null };

/** Stage 2 step 2: the tabs. */
export function showSelection(tab) {
  const a = ctx.app;
  sel.tab = tab || (a.custom_left > 0 ? sel.tab : 'random');
  if (a.custom_left === 0) sel.tab = 'random';
  if (a.random_left === 0 && !a.candidates && !a.batch && a.custom_left > 0) sel.tab = 'custom';
  const tabs = [['custom', t('tab_custom')], ['random', t('tab_random')]];
  const tablist = h('div', { class: 'tabs', role: 'tablist' }, tabs.map(([id, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${id}`, 'aria-selected': String(sel.tab === id), 'aria-controls': 'tab-panel',
    tabindex: sel.tab === id ? '0' : '-1', onclick: () => showSelection(id),
  }, label)));
  tablist.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
      const next = sel.tab === 'custom' ? 'random' : 'custom';
      showSelection(next);
      document.getElementById(`tab-${next}`)?.focus();
    }
  });
  const panel = h('div', { role: 'tabpanel', id: 'tab-panel', 'aria-labelledby': `tab-${sel.tab}` });
  const notice = sel.notice;
  sel.notice = null;
  render([2, 2], t('step_select'), notice, tablist, panel);
  ctx.rerender = () => showSelection(sel.tab);
  if (sel.tab === 'custom') customPanel(panel); else randomPanel(panel);
}

/** After a claim: the done page. */
async function claimed() {
  await loadApp(ctx.app.id);
  showDone();
}

// ---------------------------------------------------------------------------------------------
// 自编

function customPanel(panel) {
  const a = ctx.app, rules = ctx.office.rules;
  const prefix = ctx.office.prefix;
  const maxRows = Math.max(1, Math.min(rules.custom_per_check, a.custom_left));
  const rows = [''];
  let active = 0;
  let length = null;
  let nextAt = allowedAt(ctx.appTiming, a.next_check_in_ms || 0);
  const results = h('div', { id: 'check-results', 'aria-live': 'off' });
  const rowsBox = h('ol', { class: 'plate-rows', id: 'plate-rows' });
  const addBtn = h('button', { type: 'button', class: 'secondary', id: 'add-plate' }, t('add_plate'));
  const confirmBtn = h('button', { type: 'button', class: 'primary', id: 'custom-confirm', disabled: true }, t('confirm_pick'));
  const kb = createKeyboard(a.id, {
    onType: (c) => { if (length && rows[active].length < length) { rows[active] += c; changed(); } },
    onBackspace: () => { rows[active] = rows[active].slice(0, -1); changed(); },
    onClear: () => { rows[active] = ''; changed(); },
  });

  function drawRows() {
    rowsBox.replaceChildren(...rows.map((r, i) => {
      const slots = Array.from({ length: length || 5 }, (_, k) => h('span', { class: r[k] ? 'slot filled' : 'slot' }, r[k] || ''));
      const label = `${t('plate_n', { n: i + 1 })}: ${prefix} ${r || ''}`;
      return h('li', { class: i === active ? 'plate-row active' : 'plate-row' },
        h('button', { type: 'button', class: 'plate-input', id: `plate-${i}`, 'aria-pressed': String(i === active), 'aria-label': label, 'data-serial': r,
          onclick: () => { active = i; changed(); } },
        h('span', { class: 'prefix' }, prefix, '·'), slots),
        rows.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => { rows.splice(i, 1); active = Math.min(active, rows.length - 1); changed(); } }, t('remove_plate')) : null);
    }));
    addBtn.hidden = rows.length >= maxRows;
  }

  function complete() {
    return rows.filter((r) => length && r.length === length);
  }

  function refreshButton() {
    const wait = left(nextAt);
    confirmBtn.disabled = wait > 0 || complete().length === 0;
    confirmBtn.textContent = wait > 0 ? t('confirm_pick_in', { s: secondsToWait(nextAt) }) : t('confirm_pick');
    return wait > 0;
  }

  async function changed() {
    drawRows();
    refreshButton();
    try {
      length = await kb.refresh(rows[active]);
      drawRows();
      refreshButton();
    } catch (err) {
      results.replaceChildren(errorBanner(err));
    }
  }

  addBtn.addEventListener('click', () => {
    if (rows.length < maxRows) { rows.push(''); active = rows.length - 1; changed(); }
  });

  confirmBtn.addEventListener('click', async () => {
    const plates = complete();
    if (!plates.length) return;
    confirmBtn.disabled = true;
    try {
      await post(appPath('/custom'), { plates }, { idempotent: true });
      return claimed();
    } catch (err) {
      await checkRefused(err, plates);
    }
  });

  async function checkRefused(err, plates) {
    const d = err.details;
    if (err.code === 'not_available') {
      const list = h('ul', { class: 'results', id: 'check-reasons' }, (d.results || []).map((r) =>
        h('li', { 'data-serial': r.serial }, h('strong', {}, r.plate), ' ', t('reason_' + r.reason))));
      const msg = t('check_failed', { n: d.custom_left });
      results.replaceChildren(banner('error', msg), list);
      announce(msg);
      ctx.app.custom_left = d.custom_left;
      document.getElementById('custom-left').textContent = t('custom_left_line', { n: d.custom_left });
      nextAt = allowedAt(err.timing, d.next_check_in_ms || 0);
      rows.splice(0, rows.length, '');
      active = 0;
      if (d.custom_left === 0) {
        await loadApp(ctx.app.id);
        if (ctx.app.state === 'exhausted') return showExhausted();
        sel.notice = banner('notice', t('custom_spent'));
        return showSelection('random');
      }
      tick(refreshButton);
      return changed();
    }
    if (err.code === 'too_soon' && d.retry_after_ms) {
      nextAt = allowedAt(err.timing, d.retry_after_ms);
      tick(refreshButton);
    }
    if (err.code === 'invalid_plate' && err.field) {
      const i = Number((err.field.match(/\[(\d+)\]/) || [])[1]);
      results.replaceChildren(banner('error', `${plates[i] || ''} ${errorText(err)}`));
    } else {
      results.replaceChildren(errorBanner(err));
    }
    if (['exhausted', 'quota_spent', 'conflict'].includes(err.code)) {
      await loadApp(ctx.app.id);
      return showApplication();
    }
    refreshButton();
  }

  // The physical keyboard, while this panel is on screen and no dialog is open.
  const onKeydown = (ev) => {
    if (!document.body.contains(panel)) return document.removeEventListener('keydown', onKeydown);
    if (document.querySelector('dialog[open]') || ev.target.closest?.('input, textarea, select')) return;
    if (ev.key === 'Enter' && !confirmBtn.disabled && ev.target === document.body) { confirmBtn.click(); return; }
    if (kb.onKey(ev)) ev.preventDefault();
  };
  document.addEventListener('keydown', onKeydown);

  panel.append(
    h('p', { class: 'quota', id: 'custom-left' }, t('custom_left_line', { n: a.custom_left })),
    h('p', { class: 'hint' }, t('per_check_line', { n: rules.custom_per_check })),
    results, rowsBox, addBtn, kb.element,
    h('div', { class: 'actions sticky' }, confirmBtn));
  tick(refreshButton);
  changed();
}

// ---------------------------------------------------------------------------------------------
// 随机

function randomPanel(panel) {
  const a = ctx.app;
  let batch = a.batch ? { ...a.batch, deadline: expiresAt(ctx.appTiming, a.batch.expires_in_ms), picked: a.batch.picked } : null;
  let cands = a.candidates ? { ...a.candidates, deadline: expiresAt(ctx.appTiming, a.candidates.expires_in_ms) } : null;
  let drawnHere = !!batch;
  let drawAt = null;
  const exclude = h('input', { type: 'checkbox', id: 'exclude-four' });
  const drawBtn = h('button', { type: 'button', class: 'primary', id: 'draw' });
  const status = h('div', { id: 'random-status' });
  const batchBox = h('section', { class: 'card', id: 'batch', 'aria-labelledby': 'batch-h' });
  const candBox = h('section', { class: 'card', id: 'candidates', 'aria-labelledby': 'cand-h' });
  const claimBtn = h('button', { type: 'button', class: 'primary', id: 'claim', disabled: true }, t('confirm_pick'));
  const told = new Set();

  const randomLeft = h('strong', {}, String(a.random_left));
  function drawLabel() {
    const n = ctx.app.random_left;
    randomLeft.textContent = String(n);
    drawBtn.textContent = drawnHere ? t('draw_again', { n }) : t('draw_once', { n });
    drawBtn.disabled = n === 0 || left(drawAt) > 0;
  }

  function countdown(deadline, id) {
    const s = secondsToExpiry(deadline);
    if (s === 0) {
      if (!told.has(id + 0)) { told.add(id + 0); announce(t('expired')); }
      return t('expired');
    }
    // Spoken at 30 s and 10 s only.
    for (const mark of [30, 10]) {
      if (s <= mark && !told.has(id + mark)) { told.add(id + mark); announce(t('expires_in', { s })); }
    }
    return t('expires_in', { s });
  }

  function drawBatch() {
    if (!batch) return batchBox.replaceChildren(h('h2', { id: 'batch-h' }, t('tab_random')));
    const live = left(batch.deadline) > 0;
    batchBox.replaceChildren(
      h('div', { class: 'box-head' }, h('h2', { id: 'batch-h' }, t('tab_random')), h('span', { class: 'countdown', id: 'batch-countdown' }, countdown(batch.deadline, 'b'))),
      h('p', { class: 'hint' }, t('one_per_batch')),
      h('ul', { class: 'numbers', id: 'batch-plates' }, batch.plates.map((p) => {
        const picked = batch.picked === p.serial;
        return h('li', { class: live ? '' : 'expired' }, h('span', { class: 'plate' }, p.plate),
          h('button', { type: 'button', class: 'secondary small', 'data-serial': p.serial, disabled: !live || !!batch.picked,
            onclick: () => pick(p.serial) }, picked ? t('picked') : t('add_candidate')));
      })));
  }

  function drawCandidates() {
    const chosen = candBox.querySelector('input[name=candidate]:checked')?.value;
    const live = cands && left(cands.deadline) > 0;
    candBox.replaceChildren(
      h('div', { class: 'box-head' }, h('h2', { id: 'cand-h' }, t('candidates')),
        cands ? h('span', { class: 'countdown', id: 'cand-countdown' }, countdown(cands.deadline, 'c')) : null),
      cands && cands.plates.length
        ? h('ul', { class: 'numbers', id: 'cand-plates' }, cands.plates.map((p, i) => h('li', { class: live ? '' : 'expired' },
          h('input', { type: 'radio', name: 'candidate', id: `cand-${p.serial}`, value: p.serial, disabled: !live, checked: chosen ? chosen === p.serial : i === cands.plates.length - 1 }),
          h('label', { for: `cand-${p.serial}`, class: 'plate' }, p.plate))))
        : h('p', { class: 'hint' }, t('no_candidates')));
    claimBtn.disabled = !live;
  }

  function refresh() {
    drawLabel();
    const b = batch && left(batch.deadline) > 0;
    const c = cands && left(cands.deadline) > 0;
    // Rebuilt only when a countdown's text changes (not every tick), keeping focus where it is.
    const key = `${batch ? secondsToExpiry(batch.deadline) : '-'}|${cands ? secondsToExpiry(cands.deadline) : '-'}`;
    if (key !== refresh.last) {
      refresh.last = key;
      const focused = document.activeElement?.id;
      if (batch) document.getElementById('batch-countdown') ? (document.getElementById('batch-countdown').textContent = countdown(batch.deadline, 'b')) : drawBatch();
      if (cands) document.getElementById('cand-countdown') ? (document.getElementById('cand-countdown').textContent = countdown(cands.deadline, 'c')) : drawCandidates();
      if (batch && !b && batchBox.querySelector('button:not([disabled])')) drawBatch();
      if (cands && !c && !claimBtn.disabled) drawCandidates();
      if (focused && document.activeElement?.id !== focused) document.getElementById(focused)?.focus();
    }
    if (!b && !c && ctx.app.random_left === 0 && ctx.app.custom_left === 0) {
      loadApp(ctx.app.id).then(showApplication);
      return false;
    }
    return true;
  }

  drawBtn.addEventListener('click', async () => {
    drawBtn.disabled = true;
    status.replaceChildren();
    try {
      const { data, timing } = await post(appPath('/draws'), { exclude_four: exclude.checked }, { idempotent: true });
      drawnHere = true;
      ctx.app.random_left = data.random_left;
      batch = { ...data.batch, deadline: expiresAt(timing, data.batch.expires_in_ms), picked: null };
      cands = data.candidates ? { ...data.candidates, deadline: expiresAt(timing, data.candidates.expires_in_ms) } : null;
      told.clear();
      drawBatch();
      drawCandidates();
      announce(`${t('tab_random')}: ${batch.plates.length} · ${t('expires_in', { s: secondsToExpiry(batch.deadline) })}`);
    } catch (err) {
      if (err.details.retry_after_ms) drawAt = allowedAt(err.timing, err.details.retry_after_ms);
      status.replaceChildren(errorBanner(err));
      if (err.code === 'exhausted' || err.code === 'quota_spent') { await loadApp(ctx.app.id); return showApplication(); }
    }
    drawLabel();
  });

  async function pick(serial) {
    try {
      const { data, timing } = await post(appPath('/candidates'), { serial }, { idempotent: true });
      cands = { ...data.candidates, deadline: expiresAt(timing, data.candidates.expires_in_ms) };
      batch.picked = serial;
      told.delete('c30'); told.delete('c10'); told.delete('c0');
      drawBatch();
      drawCandidates();
      document.getElementById(`cand-${serial}`)?.focus();
    } catch (err) {
      status.replaceChildren(errorBanner(err));
    }
  }

  claimBtn.addEventListener('click', async () => {
    const serial = candBox.querySelector('input[name=candidate]:checked')?.value;
    if (!serial) return;
    claimBtn.disabled = true;
    try {
      await post(appPath('/claim'), { serial }, { idempotent: true });
      return claimed();
    } catch (err) {
      status.replaceChildren(errorBanner(err));
      claimBtn.disabled = false;
    }
  });

  panel.append(
    h('p', { class: 'quota', id: 'random-left' }, t('random_left'), ' ', randomLeft),
    h('div', { class: 'draw-row' }, h('label', { class: 'check', for: 'exclude-four' }, exclude, ' ', t('exclude_four')), drawBtn),
    status, batchBox, candBox,
    h('div', { class: 'actions sticky' }, claimBtn));
  drawBatch();
  drawCandidates();
  tick(refresh);
}

