// Offices and their rules (SPEC R5.1, §3): the list, and one form to create an office or edit
// one (PUT /v1/admin/offices/{office}); the API's refusals are shown on the field they name.
// Fields the form does not show are sent back as they were, so editing never drops a rule.

import { api, seg } from '../api.js';
import { tr } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy, toast, errorText } from '../dom.js';

/** The numeric rules of SPEC §3: API name, Chinese and English label, unit. */
const NUMBER_RULES = [
  ['custom_quota', '自编号牌个数', 'Custom numbers per vehicle', ''],
  ['custom_per_check', '每次最多输入号码数', 'Numbers per custom check', ''],
  ['custom_min_interval_ms', '两次自编确认最小间隔', 'Least time between custom checks', 'ms'],
  ['random_quota', '随机选号次数', 'Random draws per vehicle', ''],
  ['random_batch', '每次随机号码数', 'Numbers per draw', ''],
  ['random_ttl_ms', '随机号码有效时间', 'Life of a drawn batch', 'ms'],
  ['candidate_ttl_ms', '备选栏有效时间', 'Life of the candidate list', 'ms'],
  ['sms_confirm_delay_ms', '短信验证码确认等待', 'Wait before an SMS code is accepted', 'ms'],
  ['validity_working_days', '预选号牌有效期（工作日）', 'Working days to register', ''],
  ['blacklist_days', '黑名单天数', 'Blacklist days', ''],
  ['opening_window_ms', '开放窗口（随机顺序处理）', 'Opening window (served in random order)', 'ms'],
];

/** A real calendar date written YYYY-MM-DD. */
function isDate(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const d = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text;
}

function lines(text) {
  return text.split(/[\n,，、;；]+/).map((s) => s.trim()).filter(Boolean);
}

export function render(root, ctx) {
  const listBox = h('div', {}, h('p', { class: 'loading' }, tr('正在加载…', 'Loading…')));
  const formBox = h('div', { id: 'office-form-box' });
  replace(root,
    h('h1', {}, tr('办事处与规则', 'Offices and rules')),
    h('p', { class: 'lede' }, tr('规则更改对之后的操作立即生效，无需重启。', 'Rule changes apply to the next actions, without a restart.')),
    listBox,
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'office-new', onclick: () => edit(null) }, tr('新建办事处', 'New office'))),
    formBox);

  async function loadList() {
    try {
      const offices = await ctx.refreshOffices();
      const docs = await Promise.all(offices.map((o) => api('GET', `/v1/offices/${seg(o.id)}`)));
      replace(listBox, table({
        caption: tr('办事处', 'Offices'),
        columns: [{ label: 'ID' }, { label: tr('名称', 'Name') }, { label: tr('号牌前缀', 'Prefix') },
          { label: tr('号牌类别', 'Classes') }, { label: tr('须知版本', 'Notice version') }, { label: tr('状态', 'State') },
          { label: tr('操作', 'Action') }],
        rows: docs.map((d) => [h('span', { class: 'mono' }, d.id), d.name, d.prefix, d.classes.join(', '), d.notice?.version || '—',
          d.rules?.maintenance ? h('span', { class: 'tag bad' }, tr('维护中', 'maintenance')) : h('span', { class: 'tag ok' }, tr('服务中', 'serving')),
          h('button', { type: 'button', class: 'secondary small', 'data-edit-office': d.id, onclick: () => edit(d) }, tr('编辑', 'Edit'))]),
        empty: tr('还没有办事处。', 'No office yet.'),
      }));
    } catch (err) {
      replace(listBox, h('p', { class: 'notice bad' }, errorText(err)));
    }
  }

  function edit(doc) {
    const form = officeForm(doc, async (id) => {
      toast(doc ? tr(`办事处 ${id} 已更新。`, `Office ${id} updated.`) : tr(`办事处 ${id} 已创建。`, `Office ${id} created.`));
      replace(formBox);
      await loadList();
    }, () => replace(formBox));
    replace(formBox, form);
    form.querySelector('h2').focus();
  }
  loadList();
}

function officeForm(doc, onSaved, onCancel) {
  const isNew = !doc;
  const rules = doc?.rules || {};
  const id = h('input', { type: 'text', id: 'office-id', class: 'mono', value: doc?.id || '', disabled: !isNew, autocomplete: 'off', spellcheck: 'false' });
  const name = h('input', { type: 'text', id: 'office-name', class: 'wide', value: doc?.name || '' });
  const prefix = h('input', { type: 'text', id: 'office-prefix', value: doc?.prefix || '', size: 6 });
  const classes = h('input', { type: 'text', id: 'office-classes', class: 'wide mono', value: (doc?.classes || ['small', 'small_new_energy']).join(', ') });
  const numbers = NUMBER_RULES.map(([key, zh, en, unit]) => {
    const input = h('input', { type: 'number', id: `rule-${key}`, min: 0, step: 1, value: rules[key] ?? '' });
    return { key, input, box: field({ label: unit ? `${tr(zh, en)}（${unit}）` : tr(zh, en), input, field: `rules.${key}` }) };
  });
  const holidays = h('textarea', { id: 'rule-holidays', rows: 3 }, (rules.holidays || []).join('\n'));
  const open = h('input', { type: 'time', id: 'rule-open', value: rules.service_hours?.open || '' });
  const close = h('input', { type: 'time', id: 'rule-close', value: rules.service_hours?.close || '' });
  const maintenance = h('input', { type: 'checkbox', id: 'rule-maintenance', checked: rules.maintenance });
  const deny = h('textarea', { id: 'rule-deny', rows: 2 }, (rules.deny || []).join('\n'));
  const patterns = h('textarea', { id: 'rule-custom-patterns', rows: 3 },
    Object.entries(rules.custom_patterns || {}).map(([c, ps]) => `${c}: ${ps.join(', ')}`).join('\n'));
  const noticeVersion = h('input', { type: 'text', id: 'notice-version', value: doc?.notice?.version || '' });
  const noticeText = h('textarea', { id: 'notice-text', class: 'prose', rows: 8 }, doc?.notice?.text || '');
  const save = h('button', { type: 'submit', id: 'office-save' }, isNew ? tr('创建办事处', 'Create the office') : tr('保存更改', 'Save the changes'));
  const headingId = 'office-form-heading';

  const form = h('form', { class: 'stack', novalidate: true, 'aria-labelledby': headingId },
    h('h2', { id: headingId, tabindex: '-1' }, isNew ? tr('新建办事处', 'New office') : tr(`编辑办事处 ${doc.id}`, `Edit office ${doc.id}`)),
    h('div', { class: 'grid-fields' },
      field({ label: tr('办事处 ID', 'Office id'), input: id, field: 'id', hint: tr('a-z、0-9、_，最多 32 个字符；创建后不可更改。', 'a-z, 0-9 and _, up to 32; fixed once created.') }),
      field({ label: tr('名称', 'Name'), input: name, field: 'name' }),
      field({ label: tr('号牌前缀', 'Plate prefix'), input: prefix, field: 'prefix', hint: tr('省份简称与发牌机关代号，如 粤K。', 'Province and office letter, e.g. 粤K.') })),
    field({ label: tr('号牌类别', 'Plate classes'), input: classes, field: 'classes', hint: tr('以逗号分隔，如 small, small_new_energy。', 'Comma-separated, e.g. small, small_new_energy.') }),
    h('fieldset', {}, h('legend', {}, tr('选号规则', 'Selection rules')),
      h('div', { class: 'grid-fields' }, numbers.map((n) => n.box)),
      h('div', { class: 'field', 'data-field': 'rules.maintenance' },
        h('label', { class: 'choice', for: 'rule-maintenance' }, maintenance, tr('维护中（暂停选号）', 'Maintenance (selection closed)')))),
    h('fieldset', {}, h('legend', {}, tr('服务时间与节假日', 'Service hours and holidays')),
      h('div', { class: 'grid-fields' },
        field({ label: tr('开始（UTC+8）', 'Opens (UTC+8)'), input: open, field: 'rules.service_hours', hint: tr('两项都留空为全天开放。', 'Both empty: always open.') }),
        field({ label: tr('结束（UTC+8）', 'Closes (UTC+8)'), input: close, field: 'rules.service_hours.close' })),
      field({ label: tr('节假日', 'Holidays'), input: holidays, field: 'rules.holidays', hint: tr('每行一个日期，YYYY-MM-DD；周末本就不是工作日。', 'One date a line, YYYY-MM-DD; weekends never are working days.') })),
    h('fieldset', {}, h('legend', {}, tr('自编号牌编码规则', 'Custom number rules')),
      field({ label: tr('允许的号码规则', 'Allowed patterns'), input: patterns, field: 'rules.custom_patterns',
        hint: tr('每行一个类别：类别: 规则, 规则，如 small: #####, @####。留空用类别默认。', 'One class a line: class: pattern, pattern, e.g. small: #####, @####. Empty: the class defaults.') }),
      field({ label: tr('禁用规则', 'Deny rules'), input: deny, field: 'rules.deny',
        hint: tr('每行一条：three_identical_digits、four_identical_digits 或 pattern:规则。', 'One a line: three_identical_digits, four_identical_digits or pattern:PATTERN.') })),
    h('fieldset', {}, h('legend', {}, tr('业务须知', 'Business notice')),
      field({ label: tr('版本', 'Version'), input: noticeVersion, field: 'notice.version', hint: tr('更改内容时请更新版本，市民须重新阅读同意。', 'Change it with the text: citizens accept a version.') }),
      field({ label: tr('内容', 'Text'), input: noticeText, field: 'notice.text' })),
    h('div', { class: 'actions' }, save, h('button', { type: 'button', class: 'secondary', onclick: onCancel }, tr('取消', 'Cancel'))));

  function officeDocument() {
    const base = doc ? structuredClone(doc) : {};
    delete base.id;
    delete base.class_details;
    const r = { ...(base.rules || {}) };
    for (const n of numbers) {
      const v = n.input.value.trim();
      if (v === '') delete r[n.key];
      else r[n.key] = Number(v);
    }
    r.holidays = lines(holidays.value);
    r.deny = lines(deny.value);
    r.maintenance = maintenance.checked;
    r.service_hours = open.value || close.value ? { open: open.value, close: close.value } : null;
    const cp = {};
    for (const line of patterns.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf(':');
      const cls = at >= 0 ? line.slice(0, at).trim() : line;
      cp[cls] = at >= 0 ? lines(line.slice(at + 1)) : [];
    }
    r.custom_patterns = cp;
    return {
      ...base,
      name: name.value.trim(),
      prefix: prefix.value.trim(),
      classes: lines(classes.value),
      rules: r,
      notice: { version: noticeVersion.value.trim(), text: noticeText.value },
    };
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(form);
    const officeId = id.value.trim();
    if (!/^[a-z0-9_]{1,32}$/.test(officeId)) {
      showError(form, { code: 'bad_request', field: 'id', message: tr('办事处 ID 只能包含 a-z、0-9 和 _，1 到 32 个字符。', 'An office id has 1 to 32 of a-z, 0-9 and _.') });
      return;
    }
    const badDate = lines(holidays.value).findIndex((d) => !isDate(d));
    if (badDate >= 0) {
      showError(form, { code: 'bad_request', field: 'rules.holidays', message: tr(
        `第 ${badDate + 1} 个日期“${lines(holidays.value)[badDate]}”不是有效的 YYYY-MM-DD 日期。`,
        `Date ${badDate + 1}, “${lines(holidays.value)[badDate]}”, is not a valid YYYY-MM-DD date.`) });
      return;
    }
    busy(save, async () => {
      try {
        await api('PUT', `/v1/admin/offices/${seg(officeId)}`, { body: officeDocument() });
        await onSaved(officeId);
      } catch (err) {
        showError(form, err);
      }
    });
  });
  return form;
}
