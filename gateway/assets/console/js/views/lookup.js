// Application look-up (SPEC R5.4): by VIN, by plate (serial in the chosen office), by user, or by
// a printed voucher's serial and verification code.

import { api } from '../api.js';
import { tr, fmtNumber } from '../i18n.js';
import { h, field, replace, showError, clearErrors, busy } from '../dom.js';
import { applicationCard } from '../application-card.js';

const KINDS = [
  ['vin', () => tr('VIN', 'VIN')],
  ['serial', () => tr('号牌（本办事处）', 'Plate (this office)')],
  ['user', () => tr('用户', 'User')],
  ['voucher', () => tr('预选凭证', 'Voucher')],
];

export function render(root, ctx) {
  const radios = KINDS.map(([k, name], i) => ({
    k,
    input: h('input', { type: 'radio', name: 'lookup-kind', id: `lookup-by-${k}`, value: k, checked: i === 0 }),
    name,
  }));
  const value = h('input', { type: 'text', id: 'lookup-value', class: 'wide mono', autocomplete: 'off', spellcheck: 'false' });
  const code = h('input', { type: 'text', id: 'lookup-code', class: 'mono', inputmode: 'numeric', maxlength: 8, autocomplete: 'off' });
  const valueLabel = h('span', {});
  const codeField = field({ label: tr('验证码（8 位数字）', 'Verification code (8 digits)'), input: code, field: 'code' });
  const button = h('button', { type: 'submit', id: 'lookup-submit' }, tr('查询', 'Look up'));
  const out = h('div', { id: 'lookup-result', 'aria-live': 'polite' });
  const valueField = field({ label: valueLabel, input: value, field: 'vin' });
  const form = h('form', { class: 'stack', novalidate: true, role: 'search' },
    h('fieldset', {}, h('legend', {}, tr('查询方式', 'Look up by')),
      h('div', { class: 'choices' }, radios.map((r) => h('label', { class: 'choice', for: r.input.id }, r.input, r.name())))),
    h('div', { class: 'row' }, valueField, codeField, h('div', { class: 'field' }, button)),
    out);

  function kind() {
    return radios.find((r) => r.input.checked).k;
  }
  function sync() {
    const k = kind();
    valueLabel.textContent = {
      vin: tr('车辆识别代号（17 位）', 'Vehicle identification number (17 characters)'),
      serial: tr(`号码（${ctx.officeInfo?.name || ctx.office}）`, `Serial (${ctx.officeInfo?.name || ctx.office})`),
      user: tr('用户 ID', 'User id'),
      voucher: tr('凭证编号，如 MAOMING-20261124-12', 'Voucher serial, e.g. MAOMING-20261124-12'),
    }[k];
    valueField.setAttribute('data-field', k);
    codeField.hidden = k !== 'voucher';
  }
  form.addEventListener('change', sync);
  sync();

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const k = kind();
    const query = { [k]: value.value.trim() };
    if (k === 'serial') query.office = ctx.office;
    if (k === 'voucher') query.code = code.value.trim();
    busy(button, async () => {
      clearErrors(form);
      replace(out);
      if (!query[k]) {
        showError(form, { code: 'bad_request', field: k, message: tr('请输入要查询的内容。', 'Type what to look up.') });
        return;
      }
      try {
        const apps = await api('GET', '/v1/admin/applications', { query });
        replace(out,
          h('p', { role: 'status' }, tr(`找到 ${fmtNumber(apps.length)} 个申请。`, `${fmtNumber(apps.length)} applications found.`)),
          apps.map(applicationCard));
      } catch (err) {
        showError(form, { ...err, message: err.message, field: err.field || k });
      }
    });
  });
  replace(root,
    h('h1', {}, tr('申请查询', 'Application look-up')),
    h('p', { class: 'lede' }, tr('运营人员可看到完整的 VIN 与手机号。', 'Operators see the VIN and phone unmasked.')),
    form);
}
