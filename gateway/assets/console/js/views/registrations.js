// Registrations and voids (SPEC R4.10, R5.4): the office confirms a pre-selected number was
// registered (the claim becomes issued), or voids a claim with a reason (the number goes back
// to the pool, no blacklist).

import { api, seg } from '../api.js';
import { tr } from '../i18n.js';
import { h, field, replace, showError, clearErrors, busy } from '../dom.js';
import { applicationCard } from '../application-card.js';

export function render(root, ctx) {
  const office = ctx.office;
  const prefix = ctx.officeInfo?.prefix || '';
  replace(root,
    h('h1', {}, tr('登记与作废', 'Registrations and voids'), ' · ', ctx.officeInfo?.name || office),
    h('p', { class: 'lede' }, tr(`号码只写序号部分，如 A1234（前缀 ${prefix} 可省略）。`, `Type the serial only, e.g. A1234 (the prefix ${prefix} may be left out).`)),
    h('h2', {}, tr('确认登记', 'Confirm a registration')), registrationForm(office),
    h('h2', {}, tr('作废预选', 'Void a claim')), voidForm(office));
}

function registrationForm(office) {
  const serial = h('input', { type: 'text', id: 'register-serial', class: 'mono', autocomplete: 'off', spellcheck: 'false' });
  const button = h('button', { type: 'submit', id: 'register-submit' }, tr('确认已登记', 'Confirm registered'));
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', { class: 'row' }, field({ label: tr('预选号码', 'Pre-selected serial'), input: serial, field: 'serial' }), h('div', { class: 'field' }, button)),
    out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(button, async () => {
      clearErrors(form);
      replace(out);
      try {
        const app = await api('POST', '/v1/admin/registrations', { body: { office, serial: serial.value.trim() } });
        replace(out, h('p', { class: 'notice ok', role: 'status' }, tr('已登记。', 'Registered.')), applicationCard(app));
        serial.value = '';
      } catch (err) {
        showError(form, { ...err, message: err.message, field: err.field === 'office' ? null : err.field || 'serial' });
      }
    });
  });
  return form;
}

function voidForm(office) {
  const serial = h('input', { type: 'text', id: 'void-serial', class: 'mono', autocomplete: 'off', spellcheck: 'false' });
  const reason = h('textarea', { id: 'void-reason', class: 'prose', rows: 2, maxlength: 500 });
  const button = h('button', { type: 'submit', class: 'danger', id: 'void-submit' }, tr('作废', 'Void the claim'));
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', novalidate: true },
    field({ label: tr('预选号码', 'Pre-selected serial'), input: serial, field: 'serial' }),
    field({ label: tr('原因', 'Reason'), input: reason, field: 'reason', hint: tr('记入审计记录；最多 500 字。不会列入黑名单。', 'Kept in the audit trail; up to 500 characters. No blacklist follows.') }),
    h('div', { class: 'actions' }, button), out);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(button, async () => {
      clearErrors(form);
      replace(out);
      if (!serial.value.trim()) {
        showError(form, { code: 'bad_request', field: 'serial', message: tr('请输入号码。', 'Type the serial.') });
        return;
      }
      try {
        const app = await api('POST', `/v1/admin/offices/${seg(office)}/claims/${seg(serial.value)}/void`, { body: { reason: reason.value } });
        replace(out, h('p', { class: 'notice ok', role: 'status' }, tr('已作废，号码已回到号池。', 'Voided; the number is back in the pool.')), applicationCard(app));
        serial.value = '';
        reason.value = '';
      } catch (err) {
        showError(form, { ...err, message: err.message, field: err.field || 'serial' });
      }
    });
  });
  return form;
}
