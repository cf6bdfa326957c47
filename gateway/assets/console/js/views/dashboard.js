// The live opening dashboard (SPEC R5.5): an office's available / held / claimed / issued numbers
// per class and release, draws and checks per second, their latency, and charts over the last
// minutes, refreshed by polling GET /v1/admin/offices/{office}/stats.
//
// Rates are computed here from the office's running totals (`totals.draws.count`) between two
// readings and the server's `as_of` times, so several consoles polling at once do not disturb
// each other; latency percentiles are the server's, over its window since the previous reading.

import { api, seg } from '../api.js';
import { tr, fmtNumber, fmtTime, fmtMs } from '../i18n.js';
import { h, table, replace, errorText } from '../dom.js';
import { lineChart } from '../chart.js';

/** How often the stats are read. */
const POLL_MS = 2000;
/** The charts' time windows (minutes) an operator may choose, and the one shown first. */
const WINDOWS_MIN = [1, 2, 5, 10];
let windowMin = 5;
/** Samples kept per office: the longest window at the poll rate, plus margin. */
const SAMPLES_MAX = 400;

/** Readings per office, kept while the console is open so switching views keeps the charts. */
const history = new Map();

function sum(classes, key) {
  return classes.reduce((n, c) => n + (c[key] || 0), 0);
}

/** One reading reduced to what the cards and charts show. */
function sampleOf(stats, previous) {
  const t = Date.parse(stats.as_of);
  const draws = stats.totals?.draws?.count ?? 0;
  const checks = stats.totals?.checks?.count ?? 0;
  let drawsPerS = stats.rates?.draws_per_s ?? 0;
  let checksPerS = stats.rates?.checks_per_s ?? 0;
  if (previous && t > previous.t && t - previous.t <= 5 * POLL_MS && draws >= previous.draws && checks >= previous.checks) {
    drawsPerS = ((draws - previous.draws) * 1000) / (t - previous.t);
    checksPerS = ((checks - previous.checks) * 1000) / (t - previous.t);
  }
  return {
    t, draws, checks, drawsPerS, checksPerS,
    available: sum(stats.classes, 'available'),
    held: sum(stats.classes, 'held'),
    claimed: sum(stats.classes, 'claimed'),
    issued: sum(stats.classes, 'issued'),
    pending: sum(stats.classes, 'pending'),
  };
}

function card(id, label, value, raw, sub, className) {
  return h('div', { class: `card ${className || ''}`.trim() },
    h('span', { class: 'k', id: `${id}-label` }, label),
    h('span', { class: 'v', id, 'data-value': raw, 'aria-describedby': `${id}-label` }, value),
    sub ? h('span', { class: 's' }, sub) : null);
}

function cards(stats, s) {
  const lat = stats.latency || {};
  const tot = stats.totals || {};
  const pair = (c) => `${fmtMs(c?.p50_ms)} / ${fmtMs(c?.p99_ms)}`;
  return h('div', { class: 'cards', id: 'dash-cards', 'data-draws': s.draws, 'data-checks': s.checks },
    card('dash-available', tr('可选号码', 'Available'), fmtNumber(s.available), s.available,
      tr('可被随机或自编选中', 'a draw or check may take'), 'available'),
    card('dash-pending', tr('未开放', 'Not open yet'), fmtNumber(s.pending), s.pending, tr('开放时间未到', 'before their opening')),
    card('dash-held', tr('占用中', 'Held'), fmtNumber(s.held), s.held, tr('随机批次与备选', 'batches and candidates')),
    card('dash-claimed', tr('已选定', 'Claimed'), fmtNumber(s.claimed), s.claimed),
    card('dash-issued', tr('已登记', 'Issued'), fmtNumber(s.issued), s.issued),
    card('dash-draws-per-s', tr('随机选号 / 秒', 'Draws / s'), fmtNumber(s.drawsPerS, 1), s.drawsPerS.toFixed(3),
      tr(`累计 ${fmtNumber(s.draws)} 次`, `${fmtNumber(s.draws)} in all`), 'draws'),
    card('dash-checks-per-s', tr('自编确认 / 秒', 'Checks / s'), fmtNumber(s.checksPerS, 1), s.checksPerS.toFixed(3),
      tr(`累计 ${fmtNumber(s.checks)} 次`, `${fmtNumber(s.checks)} in all`), 'checks'),
    card('dash-draw-latency', tr('随机选号 p50 / p99', 'Draw p50 / p99'), pair(lat.draws), lat.draws?.p99_ms ?? '',
      tr(`累计 p99 ${fmtMs(tot.draws?.p99_ms)}`, `p99 since start ${fmtMs(tot.draws?.p99_ms)}`), 'draws latency'),
    card('dash-check-latency', tr('自编确认 p50 / p99', 'Check p50 / p99'), pair(lat.checks), lat.checks?.p99_ms ?? '',
      tr(`累计 p99 ${fmtMs(tot.checks?.p99_ms)}`, `p99 since start ${fmtMs(tot.checks?.p99_ms)}`), 'checks latency'),
    card('dash-mailbox', tr('排队请求', 'Queued calls'), fmtNumber(stats.mailbox_depth), stats.mailbox_depth,
      tr('办事处信箱深度', 'office mailbox depth')));
}

function releaseRows(stats) {
  const asOf = Date.parse(stats.as_of);
  const rows = [];
  for (const c of stats.classes) {
    for (const r of c.releases) {
      const open = Date.parse(r.opens_at) <= asOf;
      const share = r.total ? Math.round((r.available / r.total) * 100) : 0;
      const meter = h('div', { class: 'meter', role: 'img', 'aria-label': tr(`剩余 ${share}%`, `${share}% left`) });
      const fill = h('span', {});
      fill.style.width = `${share}%`;
      meter.append(fill);
      rows.push([`#${r.id}`, c.class, r.label,
        r.withdrawn_release ? tr('已撤回', 'withdrawn') : open ? tr('开放中', 'open') : `${tr('开放于', 'opens')} ${fmtTime(r.opens_at)}`,
        fmtNumber(r.total),
        h('span', { 'data-release-available': r.id }, fmtNumber(r.available)), meter,
        h('span', { 'data-release-held': r.id }, fmtNumber(r.held)),
        h('span', { 'data-release-claimed': r.id }, fmtNumber(r.claimed)),
        fmtNumber(r.issued), fmtNumber(r.withdrawn)]);
    }
  }
  return table({
    caption: tr('各投放的号码', 'Numbers per release'),
    columns: [{ label: tr('编号', 'Id') }, { label: tr('类别', 'Class') }, { label: tr('名称', 'Label') },
      { label: tr('状态', 'State') }, { label: tr('总数', 'Total'), num: true }, { label: tr('可选', 'Available'), num: true },
      { label: tr('剩余比例', 'Share left') }, { label: tr('占用中', 'Held'), num: true },
      { label: tr('已选定', 'Claimed'), num: true }, { label: tr('已登记', 'Issued'), num: true },
      { label: tr('已撤回', 'Withdrawn'), num: true }],
    rows,
    empty: tr('这个办事处还没有投放号码。', 'This office has released no numbers yet.'),
  });
}

function classRows(stats) {
  return table({
    caption: tr('各号牌类别合计', 'Totals per class'),
    columns: [{ label: tr('类别', 'Class') }, { label: tr('未开放', 'Not open'), num: true },
      { label: tr('可选', 'Available'), num: true }, { label: tr('占用中', 'Held'), num: true },
      { label: tr('已选定', 'Claimed'), num: true }, { label: tr('已登记', 'Issued'), num: true },
      { label: tr('已撤回', 'Withdrawn'), num: true }, { label: tr('总数', 'Total'), num: true }],
    rows: stats.classes.map((c) => [c.class, fmtNumber(c.pending), fmtNumber(c.available), fmtNumber(c.held),
      fmtNumber(c.claimed), fmtNumber(c.issued), fmtNumber(c.withdrawn), fmtNumber(c.total)]),
  });
}

function legend(items) {
  return h('ul', { class: 'legend' }, items.map(([cls, text]) => h('li', {}, h('i', { class: cls, 'aria-hidden': 'true' }), text)));
}

function charts(samples) {
  const windowMs = windowMin * 60000;
  const end = samples.length ? samples[samples.length - 1].t : Date.now();
  const last = samples[samples.length - 1];
  const rates = lineChart({
    label: tr('每秒随机选号与自编确认', 'Draws and checks per second'),
    summary: last ? tr(`最新 ${last.drawsPerS.toFixed(1)} 次随机、${last.checksPerS.toFixed(1)} 次自编每秒`,
      `latest ${last.drawsPerS.toFixed(1)} draws and ${last.checksPerS.toFixed(1)} checks per second`) : tr('暂无数据', 'no data yet'),
    endMs: end, windowMs,
    series: [
      { name: 'draws', className: 's-draws', points: samples.map((s) => [s.t, s.drawsPerS]) },
      { name: 'checks', className: 's-checks', points: samples.map((s) => [s.t, s.checksPerS]) },
    ],
  });
  const pool = lineChart({
    label: tr('占用中与已选定号码', 'Held and claimed numbers'),
    summary: last ? tr(`最新占用中 ${last.held}、已选定 ${last.claimed}`, `latest ${last.held} held, ${last.claimed} claimed`) : tr('暂无数据', 'no data yet'),
    endMs: end, windowMs, yFloor: 10,
    series: [
      { name: 'held', className: 's-held', points: samples.map((s) => [s.t, s.held]) },
      { name: 'claimed', className: 's-claimed', points: samples.map((s) => [s.t, s.claimed]) },
    ],
  });
  return h('div', { class: 'charts' },
    h('figure', { class: 'chart', id: 'chart-rates' }, h('h3', {}, tr(`每秒请求（近 ${windowMin} 分钟）`, `Requests per second (last ${windowMin} min)`)), rates,
      legend([['swatch-draws', tr('随机选号', 'draws')], ['swatch-checks', tr('自编确认（虚线）', 'checks (dashed)')]])),
    h('figure', { class: 'chart', id: 'chart-pool' }, h('h3', {}, tr(`占用与选定（近 ${windowMin} 分钟）`, `Held and claimed (last ${windowMin} min)`)), pool,
      legend([['swatch-held', tr('占用中', 'held')], ['swatch-claimed', tr('已选定（虚线）', 'claimed (dashed)')]])));
}

export function render(root, ctx) {
  const office = ctx.office;
  if (!history.has(office)) history.set(office, []);
  const samples = history.get(office);
  const status = h('p', { class: 'dash-status', id: 'dash-status' }, tr('正在读取…', 'Reading…'));
  const alert = h('div', { role: 'alert', id: 'dash-alert' });
  const body = h('div', { id: 'dash-body' });
  let paused = false;
  let timer = null;
  let stopped = false;
  let failing = false;
  const pause = h('button', { type: 'button', class: 'secondary small', id: 'dash-pause', 'aria-pressed': 'false',
    onclick: () => {
      paused = !paused;
      pause.setAttribute('aria-pressed', String(paused));
      pause.textContent = paused ? tr('继续刷新', 'Resume') : tr('暂停刷新', 'Pause');
      if (!paused) poll();
    } }, tr('暂停刷新', 'Pause'));

  const windowSelect = h('select', { id: 'dash-window',
    onchange: (e) => {
      windowMin = Number(e.target.value);
      if (lastStats) draw(lastStats);
    } }, WINDOWS_MIN.map((m) => h('option', { value: m, selected: m === windowMin }, tr(`近 ${m} 分钟`, `last ${m} min`))));
  let lastStats = null;
  replace(root,
    h('div', { class: 'dash-head' },
      h('div', {},
        h('h1', {}, tr('开放监控', 'Opening dashboard'), ' · ', ctx.officeInfo?.name || office),
        status),
      h('div', { class: 'actions' },
        h('label', { for: 'dash-window' }, tr('图表范围', 'Charts')), windowSelect, pause)),
    alert, body);

  function draw({ stats, s }) {
    replace(body, cards(stats, s), charts(samples), h('h2', {}, tr('号池明细', 'The pool in detail')), classRows(stats), releaseRows(stats));
  }

  async function poll() {
    clearTimeout(timer);
    if (stopped || paused) return;
    try {
      const stats = await api('GET', `/v1/admin/offices/${seg(office)}/stats`);
      if (stopped) return;
      const s = sampleOf(stats, samples[samples.length - 1]);
      if (!samples.length || s.t > samples[samples.length - 1].t) samples.push(s);
      while (samples.length > SAMPLES_MAX) samples.shift();
      lastStats = { stats, s };
      draw(lastStats);
      status.textContent = tr(`每 ${POLL_MS / 1000} 秒刷新 · 数据时间 ${fmtTime(stats.as_of)}`,
        `Refreshed every ${POLL_MS / 1000} s · figures as of ${fmtTime(stats.as_of)}`);
      status.setAttribute('data-as-of', stats.as_of);
      if (failing) {
        failing = false;
        replace(alert, h('p', { class: 'notice ok' }, tr('已恢复读取。', 'Reading again.')));
      }
    } catch (err) {
      if (stopped) return;
      failing = true;
      replace(alert, h('p', { class: 'notice bad' }, tr('读取失败，稍后重试：', 'Could not read the figures; retrying: '), errorText(err)));
    }
    if (!stopped && !paused) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
