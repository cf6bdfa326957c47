// The audit trail (SPEC R5.6): oldest first, a page at a time (`after` = the last id seen),
// filtered by office (or the registry's own trail: blacklist lifts, certificate imports) and
// by a start time.

import { api } from '../api.js';
import { tr, fmtTime } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy } from '../dom.js';
import { officeInputToRfc3339 } from '../office-time.js';

const PAGE = 50;

export function render(root, ctx) {
  const office = h('select', { id: 'audit-office' },
    ctx.offices.map((o) => h('option', { value: o.id, selected: o.id === ctx.office }, `${o.name}（${o.id}）`)),
    h('option', { value: '' }, tr('登记册（跨办事处：黑名单解除、凭证导入）', 'Registry (across offices: lifts, imports)')));
  const since = h('input', { type: 'datetime-local', id: 'audit-since', step: 1 });
  const button = h('button', { type: 'submit', id: 'audit-submit' }, tr('查看', 'Show'));
  const out = h('div', { id: 'audit-result' });
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', { class: 'row' },
      field({ label: tr('范围', 'Trail'), input: office, field: 'office' }),
      field({ label: tr('起始时间（UTC+8）', 'Since (UTC+8)'), input: since, field: 'since', hint: tr('留空为全部。', 'Empty: from the start.') }),
      h('div', { class: 'field' }, button)));
  /** The `after` of every page shown so far, for going back. */
  let pages = [0];

  async function show(after) {
    clearErrors(form);
    try {
      const r = await api('GET', '/v1/admin/audit', {
        query: { office: office.value, since: officeInputToRfc3339(since.value), after, limit: PAGE },
      });
      const prev = h('button', { type: 'button', class: 'secondary', id: 'audit-prev', disabled: pages.length < 2,
        onclick: () => { pages.pop(); show(pages[pages.length - 1]); } }, tr('上一页', 'Previous page'));
      const next = h('button', { type: 'button', class: 'secondary', id: 'audit-next', disabled: !r.more,
        onclick: () => { pages.push(r.next_after); show(r.next_after); } }, tr('下一页', 'Next page'));
      replace(out,
        table({
          caption: tr(`第 ${pages.length} 页`, `Page ${pages.length}`),
          columns: [{ label: '#', num: true }, { label: tr('时间', 'At') }, { label: tr('操作者', 'Who') },
            { label: tr('动作', 'Action') }, { label: tr('申请', 'Application') }, { label: tr('号牌', 'Plate') }, { label: tr('详情', 'Detail') }],
          rows: r.entries.map((e) => [String(e.id), fmtTime(e.at), e.who, h('span', { class: 'mono' }, e.action),
            e.application ? h('span', { class: 'mono' }, e.application) : '—', e.plate || e.serial || '—', e.detail || '']),
          empty: tr('没有符合条件的记录。', 'No entries match.'),
        }),
        h('div', { class: 'actions' }, prev, next));
    } catch (err) {
      replace(out);
      showError(form, err);
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    pages = [0];
    busy(button, () => show(0));
  });
  replace(root,
    h('h1', {}, tr('审计记录', 'Audit trail')),
    h('p', { class: 'lede' }, tr('每一次状态变更：谁、做了什么、何时。按时间先后排列，只追加不修改。',
      'Every state change: who, what, when. Oldest first; append-only.')),
    form, out);
  show(0);
}
