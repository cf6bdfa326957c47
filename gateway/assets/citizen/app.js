// The citizen's page: a sequence of small screens driven by `GET /v1/me`'s `resume` (R4.9),
// against the public API only (API.md "Public" and "Citizen").
//
// Screens: login (standalone mode) → service description → office + pool notice + business
// notice → VIN, voucher, SMS → selection service description → identity → 自编 / 随机 → done;
// and the exhausted and blacklisted pages. Practice mode (模拟选号) runs the same selection
// screens on a practice application, marked on every screen.

import { get, post, href } from './api.js';
import { h, banner, announce } from './dom.js';
import { t, setLang, currentLang, errorText, officeDate, officeTime } from './i18n.js';
import { stopAll } from './timing.js';
import { smsBlock } from './sms.js';
import { showOffices, showConfirmInfo } from './apply.js';
import { showIdentity, showSelection } from './select.js';

const PRACTICE_KEY = 'platepool.practice';

/** What the screens share. */
export const ctx = {
  me: null,
  app: null,        // the application as GET /v1/applications/{id} answers it
  office: null,     // GET /v1/offices/{office}
  practice: false,
  step: null,       // [stage, step] shown in the header
  render,
  go: {},
};

const main = () => document.getElementById('app');

/** Replaces the screen: header state, heading, content; focus moves to the heading. */
export function render(step, title, ...content) {
  stopAll();
  document.querySelectorAll('dialog').forEach((d) => d.close());
  ctx.rerender = null;
  ctx.step = step;
  renderChrome();
  const heading = h('h1', { tabindex: '-1', id: 'screen-title' }, title);
  main().replaceChildren(heading, ...content.filter(Boolean));
  document.title = `${title} · ${t('title')}`;
  heading.focus({ preventScroll: false });
  window.scrollTo(0, 0);
}

const STEPS = [[1, 1, 'step_basic'], [1, 2, 'step_confirm'], [1, 3, 'step_service'], [2, 1, 'step_identity'], [2, 2, 'step_select'], [2, 3, 'step_done']];

function renderChrome() {
  const bar = document.getElementById('practice-banner');
  bar.hidden = !ctx.practice;
  bar.replaceChildren(h('strong', {}, t('practice_banner')), ' ',
    h('button', { type: 'button', class: 'link', id: 'practice-exit', onclick: leavePractice }, t('practice_exit')));
  document.body.classList.toggle('practice', ctx.practice);
  const langBtn = document.getElementById('lang');
  langBtn.textContent = t('lang_toggle');
  langBtn.setAttribute('aria-label', t('lang_toggle_label'));
  document.getElementById('site-title').textContent = t('title');
  const logout = document.getElementById('logout');
  logout.hidden = !ctx.me;
  logout.textContent = t('logout');
  const steps = document.getElementById('steps');
  if (!ctx.step) { steps.hidden = true; return; }
  steps.hidden = false;
  steps.replaceChildren(...STEPS.filter(([s]) => !ctx.practice || s === 2).map(([s, n, key]) => {
    const here = ctx.step[0] === s && ctx.step[1] === n;
    return h('li', { class: here ? 'current' : '', 'aria-current': here ? 'step' : null },
      h('span', { class: 'stage' }, t(s === 1 ? 'stage1' : 'stage2'), ' '), t(key));
  }));
}

export function errorBanner(err) {
  return banner('error', errorText(err));
}

/** Loads an application and its office into ctx. */
export async function loadApp(id) {
  const { data, timing } = await get(`/v1/applications/${encodeURIComponent(id)}`);
  ctx.app = data;
  ctx.appTiming = timing;
  ctx.practice = !!data.practice;
  if (!ctx.office || ctx.office.id !== data.office) {
    ctx.office = (await get(`/v1/offices/${encodeURIComponent(data.office)}`)).data;
    ctx.office.id = data.office;
  }
  return data;
}

/** Where an application stands → its screen. */
export async function showApplication() {
  const a = ctx.app;
  if (a.state === 'claimed' || a.state === 'issued') return showDone();
  if (a.state === 'exhausted') return showExhausted();
  if (a.state === 'lapsed' || a.state === 'voided') return showStart(a.message);
  if (ctx.practice) return a.identity_verified ? showSelection() : showIdentity();
  return showService();
}

async function boot() {
  main().replaceChildren(h('p', { class: 'loading' }, t('loading')));
  try {
    ctx.me = (await get('/v1/me')).data;
  } catch (err) {
    ctx.me = null;
    if (err.status === 401) return showLogin();
    return render(null, t('title'), errorBanner(err));
  }
  const practiceId = sessionStorage.getItem(PRACTICE_KEY);
  if (practiceId) {
    try {
      await loadApp(practiceId);
      return showApplication();
    } catch (_) {
      sessionStorage.removeItem(PRACTICE_KEY);
    }
  }
  ctx.practice = false;
  const me = ctx.me;
  if (me.blacklisted_until) return showBlacklisted(me.blacklisted_until);
  if (me.resume) {
    await loadApp(me.resume.application);
    return showApplication();
  }
  if (me.message && me.message.code === 'exhausted') return showExhausted();
  return showStart(me.message && me.message.text);
}

function showLogin() {
  let phone = '';
  const phoneField = h('div', { class: 'field' },
    h('label', { for: 'login-phone' }, t('phone')),
    h('p', { class: 'hint', id: 'login-phone-hint' }, t('phone_hint')),
    h('input', { id: 'login-phone', type: 'tel', inputmode: 'tel', autocomplete: 'tel', 'aria-describedby': 'login-phone-hint' }));
  const input = phoneField.querySelector('input');
  const block = smsBlock({
    id: 'login',
    label: t('login_submit'),
    send: () => { phone = input.value.trim(); return post('/v1/login/sms', { phone }); },
    submit: async (code) => {
      await post('/v1/login', { phone, sms_code: code });
      await boot();
    },
  });
  render(null, t('login_title'), h('p', {}, t('login_intro')), phoneField, block);
}

export function showStart(notice) {
  render([1, 1], t('intro_title'),
    notice ? banner('notice', notice) : null,
    h('p', { class: 'lead' }, t('intro_text')),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', id: 'start', onclick: () => showOffices(false) }, t('submit_info'))),
    h('section', { class: 'card practice-card', 'aria-labelledby': 'practice-h' },
      h('h2', { id: 'practice-h' }, t('practice_start')),
      h('p', {}, t('practice_intro')),
      h('button', { type: 'button', class: 'secondary', id: 'practice', onclick: () => showOffices(true) }, t('practice_start'))));
}

/** Opens a practice application and goes to its selection (R4.13). */
export async function startPractice(office, cls) {
  const { data } = await post('/v1/practice', { office, class: cls }, { idempotent: true });
  sessionStorage.setItem(PRACTICE_KEY, data.id);
  await loadApp(data.id);
  return showApplication();
}

function leavePractice() {
  sessionStorage.removeItem(PRACTICE_KEY);
  ctx.practice = false;
  ctx.app = null;
  boot();
}

export function rulesList(rows) {
  return h('dl', { class: 'facts' }, rows.filter(Boolean).flatMap(([k, v, id]) => [h('dt', {}, k), h('dd', { id }, v)]));
}

export function classLabel(cls) {
  const key = 'class_' + cls;
  const text = t(key);
  return text === key ? cls : text;
}

/** Stage 1 step 3: what was submitted and the quotas; "开始选号" (R4.3). */
export function showService() {
  const a = ctx.app, r = ctx.office.rules;
  render([1, 3], t('service_title'),
    rulesList([
      [t('office'), ctx.office.name],
      [t('vehicle_class'), classLabel(a.class)],
      [t('vin'), a.vin],
      [t('custom_left'), a.custom_left, 'service-custom-left'],
      [t('random_left'), a.random_left, 'service-random-left'],
      [t('per_check'), r.custom_per_check],
      [t('interval'), t('seconds', { n: Math.ceil(r.custom_min_interval_ms / 1000) })],
      [t('tab_random'), t('batch_rule', { n: r.random_batch, s: Math.round(r.random_ttl_ms / 1000) })],
      [t('validity'), t('working_days', { n: r.validity_working_days })],
    ]),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', id: 'start-selection', onclick: () => (a.identity_verified ? showSelection() : showIdentity()) }, t('start_selection'))));
}

/** Stage 2 step 3: the number, the register-by date, the voucher (R4.8). */
export function showDone() {
  const a = ctx.app, c = a.claim;
  const voucherUrl = href(`/v1/applications/${encodeURIComponent(a.id)}/voucher`);
  render([2, 3], t('done_title'),
    ctx.practice ? banner('notice', t('practice_done')) : null,
    h('div', { class: 'plate-big', id: 'done-plate', 'aria-label': `${t('done_plate')} ${c.plate}` }, c.plate),
    h('p', { class: 'register-by', id: 'register-by' }, t('register_by', { date: officeDate(c.register_by), office: ctx.office.name })),
    rulesList([
      [t('voucher_serial'), c.voucher.serial, 'voucher-serial'],
      [t('voucher_code'), c.voucher.code, 'voucher-code'],
    ]),
    h('div', { class: 'actions' },
      h('a', { class: 'button primary', id: 'print-voucher', href: voucherUrl, target: '_blank', rel: 'noopener' }, t('print_voucher'))),
    ctx.practice ? null : h('p', { class: 'hint' }, t('done_sms')));
  announce(`${t('done_title')}: ${c.plate}`);
}

export function showExhausted() {
  render(null, t('exhausted_title'),
    banner('error', t('exhausted_text')),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => (ctx.practice ? leavePractice() : showStart()) }, t('start_over'))));
}

function showBlacklisted(until) {
  render(null, t('blacklisted_title'),
    banner('error', t('blacklisted_text', { date: officeTime(until) })),
    h('p', { id: 'blacklist-until' }, officeDate(until)));
}

ctx.go = { boot, showStart, showService, showDone, showExhausted, showApplication, startPractice, loadApp };

document.getElementById('lang').addEventListener('click', () => {
  setLang(currentLang() === 'en' ? 'zh' : 'en');
  // Screens are built from data in ctx: rebuilding the current one changes nothing on the server.
  if (ctx.rerender) ctx.rerender(); else boot();
});
document.getElementById('logout').addEventListener('click', async () => {
  try { await post('/v1/logout'); } catch (_) { /* the cookie is cleared or was never there */ }
  sessionStorage.removeItem(PRACTICE_KEY);
  ctx.me = null;
  ctx.app = null;
  ctx.practice = false;
  showLogin();
});

boot();
