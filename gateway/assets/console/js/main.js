// The operator console's shell: the operator-token gate, the top bar (office, language, sign
// out), the navigation and a hash router (`#/dashboard`, `#/releases`, …) that renders one view
// at a time and stops the previous one (the dashboard's polling).

import { api, getToken, setToken, onTokenRefused } from './api.js';
import { tr, setLang, currentLang } from './i18n.js';
import { h, field, replace, showError, clearErrors, busy } from './dom.js';
import * as dashboard from './views/dashboard.js';
import * as releases from './views/releases.js';
import * as offices from './views/offices.js';
import * as certificates from './views/certificates.js';
import * as registrations from './views/registrations.js';
import * as lookup from './views/lookup.js';
import * as blacklist from './views/blacklist.js';
import * as audit from './views/audit.js';
import * as outbox from './views/outbox.js';

const OFFICE_KEY = 'platepool.console.office';

/** Every view: its hash, its name in the navigation, and its module. */
const VIEWS = [
  { path: 'dashboard', name: () => tr('开放监控', 'Opening dashboard'), view: dashboard, office: true },
  { path: 'releases', name: () => tr('号码投放', 'Releases'), view: releases, office: true },
  { path: 'offices', name: () => tr('办事处与规则', 'Offices and rules'), view: offices },
  { path: 'certificates', name: () => tr('凭证记录导入', 'Certificate import'), view: certificates },
  { path: 'registrations', name: () => tr('登记与作废', 'Registrations and voids'), view: registrations, office: true },
  { path: 'lookup', name: () => tr('申请查询', 'Application look-up'), view: lookup },
  { path: 'blacklist', name: () => tr('黑名单', 'Blacklist'), view: blacklist },
  { path: 'audit', name: () => tr('审计记录', 'Audit trail'), view: audit },
  { path: 'outbox', name: () => tr('短信发件箱', 'SMS outbox'), view: outbox },
];

const state = {
  offices: [],
  office: sessionStorage.getItem(OFFICE_KEY) || '',
  stop: null,
  signedIn: false,
};

const main = () => document.getElementById('main');

function currentPath() {
  const path = window.location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return VIEWS.some((v) => v.path === path) ? path : 'dashboard';
}

/** The context every view gets. */
function context() {
  return {
    office: state.office,
    offices: state.offices,
    officeInfo: state.offices.find((o) => o.id === state.office) || null,
    refreshOffices: loadOffices,
    selectOffice,
  };
}

async function loadOffices() {
  state.offices = await api('GET', '/v1/offices');
  if (!state.offices.some((o) => o.id === state.office)) {
    state.office = state.offices[0]?.id || '';
  }
  sessionStorage.setItem(OFFICE_KEY, state.office);
  renderTopbar();
  return state.offices;
}

function selectOffice(id) {
  state.office = id;
  sessionStorage.setItem(OFFICE_KEY, id);
  renderTopbar();
  route();
}

function stopView() {
  if (typeof state.stop === 'function') state.stop();
  state.stop = null;
}

/** Renders the view of the current hash into <main>. */
function route({ focus = true } = {}) {
  if (!state.signedIn) return;
  stopView();
  const path = currentPath();
  const entry = VIEWS.find((v) => v.path === path);
  renderNav(path);
  const root = main();
  root.replaceChildren();
  document.title = `${entry.name()} · ${tr('platepool 运营控制台', 'platepool operator console')}`;
  if (entry.office && !state.office) {
    root.append(h('h1', {}, entry.name()),
      h('p', { class: 'notice warn' }, tr('还没有办事处。请先在“办事处与规则”中新建一个。',
        'There is no office yet. Create one under “Offices and rules” first.')));
  } else {
    state.stop = entry.view.render(root, context()) || null;
  }
  if (focus) root.focus();
}

function renderNav(path) {
  const nav = document.getElementById('nav');
  nav.setAttribute('aria-label', tr('控制台导航', 'Console'));
  replace(nav, h('ul', {}, VIEWS.map((v) => h('li', {},
    h('a', { href: `#/${v.path}`, 'aria-current': v.path === path ? 'page' : null }, v.name())))));
}

function renderTopbar() {
  document.getElementById('brand-name').textContent = tr('platepool 运营控制台', 'platepool operator console');
  document.getElementById('skip-link').textContent = tr('跳到主要内容', 'Skip to main content');
  const tools = document.getElementById('topbar-tools');
  const langButton = h('button', {
    type: 'button', class: 'btn-ghost small', lang: currentLang() === 'en' ? 'zh-CN' : 'en',
    id: 'lang-toggle',
    onclick: () => {
      setLang(currentLang() === 'en' ? 'zh' : 'en');
      renderTopbar();
      if (state.signedIn) route({ focus: false });
      else showGate();
    },
  }, currentLang() === 'en' ? '中文' : 'English');
  if (!state.signedIn) {
    replace(tools, langButton);
    return;
  }
  const select = h('select', {
    id: 'office-select',
    onchange: (e) => selectOffice(e.target.value),
  }, state.offices.length
    ? state.offices.map((o) => h('option', { value: o.id, selected: o.id === state.office }, `${o.name}（${o.id}）`))
    : h('option', { value: '' }, tr('（无办事处）', '(no office)')));
  replace(tools,
    h('label', { for: 'office-select' }, tr('办事处', 'Office')), select,
    langButton,
    h('button', { type: 'button', class: 'btn-ghost small', id: 'sign-out', onclick: signOut }, tr('退出', 'Sign out')));
}

function signOut() {
  setToken('');
  state.signedIn = false;
  stopView();
  showGate();
}

/** The sign-in screen: the operator token, checked against the operator API before use. */
function showGate(refusal) {
  state.signedIn = false;
  stopView();
  renderTopbar();
  document.getElementById('nav').replaceChildren();
  document.title = tr('登录 · platepool 运营控制台', 'Sign in · platepool operator console');
  const input = h('input', { type: 'password', id: 'operator-token', class: 'wide mono', autocomplete: 'off', spellcheck: 'false', required: true });
  const submit = h('button', { type: 'submit', id: 'token-submit' }, tr('进入控制台', 'Open the console'));
  const form = h('form', { class: 'stack', novalidate: true },
    field({
      label: tr('操作员令牌', 'Operator token'), input, field: 'token',
      hint: tr('由部署配置（PLATEPOOL_OPERATOR_TOKEN）；演示模式启动时打印。只保存在本标签页中。',
        'Set by the deployment (PLATEPOOL_OPERATOR_TOKEN); printed by --demo at start. Kept in this tab only.'),
    }),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const token = input.value.trim();
    if (!token) {
      showError(form, { code: 'bad_request', field: 'token', message: tr('请输入操作员令牌。', 'Enter the operator token.') });
      return;
    }
    await busy(submit, async () => {
      try {
        await checkToken(token);
        setToken(token);
        await enter();
      } catch (err) {
        showError(form, { code: 'token', message: refusalText(err), field: 'token' });
      }
    });
  });
  const root = main();
  replace(root,
    h('div', { class: 'gate' },
      h('h1', {}, tr('运营控制台登录', 'Operator sign-in')),
      refusal ? h('div', { class: 'notice bad', role: 'alert', id: 'token-refused' },
        h('p', {}, h('strong', {}, tr('令牌被拒绝', 'The token was refused'))),
        h('p', {}, refusalText(refusal))) : null,
      h('p', { class: 'lede' }, tr('本控制台只使用公开的运营接口（/v1/admin/…），与任何集成方的后台相同。',
        'This console uses only the public operator API (/v1/admin/…), as any integrator’s back office would.')),
      form));
  input.focus();
}

function refusalText(err) {
  if (err.status === 401) return tr('令牌不正确或已过期（401）。请核对后重新输入。', 'The token is wrong or expired (401). Check it and enter it again.');
  if (err.status === 403) return tr('这是市民令牌，不是操作员令牌（403）。', 'This is a citizen token, not an operator token (403).');
  return err.message || String(err);
}

/** A cheap operator call: 200 with a good token, 401/403 otherwise. */
async function checkToken(token) {
  await api('GET', '/v1/admin/audit', { query: { limit: 1 }, token });
}

async function enter() {
  state.signedIn = true;
  await loadOffices();
  route();
}

async function boot() {
  setLang(currentLang());
  window.addEventListener('hashchange', () => route());
  onTokenRefused((err) => {
    setToken('');
    showGate(err);
  });
  const token = getToken();
  if (!token) {
    showGate();
    return;
  }
  try {
    await checkToken(token);
    await enter();
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      setToken('');
      showGate(err);
    } else {
      showGate(err);
    }
  }
}

boot();
