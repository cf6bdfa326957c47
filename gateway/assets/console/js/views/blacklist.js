// The blacklist (SPEC R4.11, R5.4): who is barred and until when; lifting an entry takes a
// reason, recorded with the operator in the audit trail.

import { api, seg } from '../api.js';
import { tr, fmtTime } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy, toast, errorText, uid } from '../dom.js';

export function render(root) {
  const box = h('div', { id: 'blacklist-box' }, h('p', { class: 'loading' }, tr('正在加载…', 'Loading…')));
  replace(root,
    h('h1', {}, tr('黑名单', 'Blacklist')),
    h('p', { class: 'lede' }, tr('逾期未登记的用户在期满前不能通过互联网选号。解除须填写原因，并记入审计记录。',
      'Users who missed their registration deadline cannot select online until the entry ends. Lifting one needs a reason, kept in the audit trail.')),
    box);
  async function load() {
    try {
      const list = await api('GET', '/v1/admin/blacklist');
      replace(box, table({
        caption: tr(`共 ${list.length} 人`, `${list.length} users`),
        columns: [{ label: tr('用户', 'User') }, { label: tr('起始', 'Since') }, { label: tr('截止', 'Until') },
          { label: tr('办事处', 'Office') }, { label: tr('申请', 'Application') }, { label: tr('解除', 'Lift') }],
        rows: list.map((e) => [h('span', { class: 'mono' }, e.user), fmtTime(e.since), fmtTime(e.until), e.office || '—',
          h('span', { class: 'mono' }, e.application || '—'), liftForm(e.user, load)]),
        empty: tr('黑名单为空。', 'Nobody is blacklisted.'),
      }));
    } catch (err) {
      replace(box, h('p', { class: 'notice bad' }, errorText(err)));
    }
  }
  load();
}

function liftForm(user, reload) {
  const reason = h('input', { type: 'text', id: uid('lift'), maxlength: 500, 'data-lift-reason': user });
  const button = h('button', { type: 'submit', class: 'small' }, tr('解除', 'Lift'));
  const form = h('form', { class: 'row', novalidate: true },
    field({ label: tr(`解除 ${user} 的原因`, `Reason to lift ${user}`), input: reason, field: 'reason' }),
    h('div', { class: 'field' }, button));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(button, async () => {
      clearErrors(form);
      try {
        await api('DELETE', `/v1/admin/blacklist/${seg(user)}`, { body: { reason: reason.value } });
        toast(tr(`已解除 ${user}。`, `${user} lifted.`));
        reload();
      } catch (err) {
        showError(form, { ...err, message: err.message, field: err.field || 'reason' });
      }
    });
  });
  return form;
}
