// The SMS code block the login, the application and the identity step share: "获取验证码"
// (again after the 60 s the server enforces), the code field, and a submit button that counts
// the code's `confirm_after_ms` down before it may be pressed (R4.4, S2).

import { h, field, fieldError, announce } from './dom.js';
import { t, errorText } from './i18n.js';
import { allowedAt, left, secondsToWait, tick } from './timing.js';

const RESEND_MS = 60_000;

/**
 * `send()` asks for a code (answers the API's {data, timing}); `submit(code)` uses it and
 * throws an ApiError on refusal. `label`/`labelIn` name the submit button.
 */
export function smsBlock({ id, send, submit, label = t('confirm'), labelIn = 'confirm_in', phoneText = null }) {
  let resendAt = null;
  let confirmAt = null;
  let sent = false;
  const status = h('p', { class: 'hint', role: 'status' });
  const getBtn = h('button', { type: 'button', class: 'secondary', id: id + '-send' }, t('get_code'));
  const codeField = field({
    id: id + '-code', label: t('sms_code'), hint: t('sms_hint'),
    attrs: { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 6, pattern: '[0-9]{6}' },
    extra: getBtn,
  });
  const input = codeField.querySelector('input');
  const submitBtn = h('button', { type: 'submit', class: 'primary', id: id + '-submit', disabled: true }, label);
  const form = h('form', { class: 'sms', novalidate: true }, phoneText ? h('p', {}, phoneText) : null, codeField, status, submitBtn);

  const refresh = () => {
    const resendLeft = left(resendAt);
    getBtn.disabled = resendLeft > 0;
    getBtn.textContent = resendLeft > 0 ? t('resend_in', { s: secondsToWait(resendAt) }) : t('get_code');
    const wait = left(confirmAt);
    submitBtn.disabled = !sent || wait > 0 || !/^\d{6}$/.test(input.value.trim());
    submitBtn.textContent = sent && wait > 0 ? t(labelIn, { s: secondsToWait(confirmAt) }) : label;
    if (confirmAt && wait === 0 && !confirmAt.told) {
      confirmAt.told = true;
      if (confirmAt.announce) announce(label);
    }
    return resendLeft > 0 || wait > 0;
  };

  getBtn.addEventListener('click', async () => {
    getBtn.disabled = true;
    try {
      const { data, timing } = await send();
      sent = true;
      resendAt = allowedAt(timing, RESEND_MS);
      confirmAt = allowedAt(timing, data.confirm_after_ms || 0);
      confirmAt.announce = (data.confirm_after_ms || 0) > 0;
      const msg = t('code_sent', { phone: data.phone || '' });
      status.textContent = msg;
      announce(msg);
      input.focus();
    } catch (err) {
      if (err.code === 'sms_too_soon' && err.details.retry_after_ms) {
        resendAt = allowedAt(err.timing, err.details.retry_after_ms);
        sent = true;
      }
      status.textContent = errorText(err);
    }
    tick(refresh);
  });
  input.addEventListener('input', refresh);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (submitBtn.disabled) return;
    submitBtn.disabled = true;
    fieldError(input, null);
    try {
      await submit(input.value.trim());
    } catch (err) {
      if (err.code === 'sms_too_soon' && err.details.retry_after_ms) {
        confirmAt = allowedAt(err.timing, err.details.retry_after_ms);
        tick(refresh);
      }
      fieldError(input, errorText(err) + (err.details.tries_left !== undefined ? ` (${err.details.tries_left})` : ''));
      input.focus();
      refresh();
    }
  });
  refresh();
  return form;
}
