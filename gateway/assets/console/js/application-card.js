// One application as operators see it (GET /v1/admin/applications): everything, VIN and phone
// unmasked, its holds and its claim.

import { tr, fmtTime } from './i18n.js';
import { h } from './dom.js';

const STATES = {
  confirmed: ['已确认（待选号）', 'confirmed (stage 1 done)'],
  selecting: ['选号中', 'selecting'],
  claimed: ['已预选', 'claimed'],
  exhausted: ['次数用尽', 'exhausted'],
  issued: ['已登记', 'issued'],
  lapsed: ['已逾期', 'lapsed'],
  voided: ['已作废', 'voided'],
};

export function stateText(state) {
  const s = STATES[state];
  return s ? tr(s[0], s[1]) : state;
}

function plates(hold) {
  if (!hold) return '—';
  return `${hold.plates.map((p) => p.plate).join('、')}（${tr('至', 'until')} ${fmtTime(hold.expires_at)}）`;
}

export function applicationCard(app) {
  const c = app.claim;
  const facts = [
    [tr('办事处', 'Office'), app.office],
    [tr('状态', 'State'), stateText(app.state) + (app.practice ? tr('（模拟）', ' (practice)') : '')],
    [tr('号牌类别 / 能源', 'Class / energy'), `${app.class} / ${app.energy}`],
    ['VIN', h('span', { class: 'mono' }, app.vin)],
    [tr('用户', 'User'), h('span', { class: 'mono' }, app.user)],
    [tr('手机', 'Phone'), app.phone],
    [tr('创建于', 'Created'), fmtTime(app.created_at)],
    [tr('剩余自编 / 随机', 'Custom / random left'), `${app.custom_left} / ${app.random_left}`],
    [tr('身份核验至', 'Identity verified until'), fmtTime(app.verified_until)],
    [tr('随机批次', 'Drawn batch'), plates(app.batch)],
    [tr('备选', 'Candidates'), plates(app.candidates)],
  ];
  if (c) {
    facts.push([tr('预选号牌', 'Pre-selected plate'), h('strong', { 'data-claim-plate': c.plate }, c.plate)]);
    facts.push([tr('选定于', 'Claimed at'), fmtTime(c.claimed_at)]);
    facts.push([tr('登记截止', 'Register by'), fmtTime(c.register_by)]);
    facts.push([tr('凭证编号 / 验证码', 'Voucher serial / code'), h('span', { class: 'mono' }, `${c.voucher.serial} / ${c.voucher.code}`)]);
    if (c.void) facts.push([tr('作废', 'Void'), String(c.void)]);
  }
  if (app.closed_at) facts.push([tr('结束于', 'Closed'), fmtTime(app.closed_at)]);
  return h('article', { class: 'app-card', 'data-application': app.id },
    h('h3', {}, tr('申请 ', 'Application '), h('span', { class: 'mono' }, app.id)),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}
