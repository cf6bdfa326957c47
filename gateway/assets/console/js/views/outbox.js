// The built-in SMS outbox (demo and tests): the messages a phone would have received, codes
// included. A deployment with a webhook sender has no outbox, and says so.

import { api } from '../api.js';
import { tr, fmtTime } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy } from '../dom.js';

export function render(root) {
  const phone = h('input', { type: 'tel', id: 'outbox-phone', autocomplete: 'off' });
  const button = h('button', { type: 'submit', id: 'outbox-submit' }, tr('刷新', 'Refresh'));
  const out = h('div', { id: 'outbox-result' });
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', { class: 'row' },
      field({ label: tr('手机号（可选）', 'Phone (optional)'), input: phone, field: 'phone' }),
      h('div', { class: 'field' }, button)));
  async function load() {
    clearErrors(form);
    try {
      const list = await api('GET', '/v1/admin/sms/outbox', { query: { phone: phone.value.trim() } });
      const recent = list.slice(-200).reverse();
      replace(out, table({
        caption: tr(`共 ${list.length} 条，最新在前（最多显示 200 条）`, `${list.length} messages, newest first (200 shown at most)`),
        columns: [{ label: tr('时间', 'Sent') }, { label: tr('手机号', 'Phone') }, { label: tr('用途', 'Purpose') }, { label: tr('内容', 'Text') }],
        rows: recent.map((m) => [fmtTime(m.sent_at), m.phone, m.purpose, h('pre', { class: 'sms' }, m.text)]),
        empty: tr('发件箱为空。', 'The outbox is empty.'),
      }));
    } catch (err) {
      replace(out);
      showError(form, err);
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(button, load);
  });
  replace(root,
    h('h1', {}, tr('短信发件箱', 'SMS outbox')),
    h('p', { class: 'lede' }, tr('内置发件箱保存演示模式下发出的短信；正式部署通过网关配置的短信接口发送。',
      'The built-in outbox keeps the messages sent in demo mode; a real deployment sends through its configured SMS webhook.')),
    form, out);
  load();
}
