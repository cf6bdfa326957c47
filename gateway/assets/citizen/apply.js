// Stage 1 (R4.1, R4.2): the office chooser with each office's pool notice (号池公示) one link
// away, the business notice (业务须知) to accept, then VIN and voucher — the VIN checked first
// with its reason shown on the field at its position — and the SMS code that creates the
// application. Practice mode picks office and class here and goes straight to selection.

import { get, post } from './api.js';
import { h, field, fieldError, dialog, banner, announce } from './dom.js';
import { t, errorText, vinReason, officeTime } from './i18n.js';
import { smsBlock } from './sms.js';
import { ctx, render, errorBanner, classLabel, loadApp, showApplication, startPractice } from './app.js';

let chosen = { office: null, cls: null, noticeVersion: null };

/** Stage 1 step 1: the offices (or, in practice, office and plate class). */
export async function showOffices(practice) {
  let offices;
  try {
    offices = (await get('/v1/offices')).data;
  } catch (err) {
    return render([1, 1], t('step_basic'), errorBanner(err));
  }
  ctx.practice = practice;
  const error = h('div', { id: 'office-error' });
  const options = offices.map((o, i) => {
    const id = `office-${o.id}`;
    return h('li', { class: 'option' },
      h('input', { type: 'radio', name: 'office', id, value: o.id, checked: i === 0 }),
      h('label', { for: id }, h('strong', {}, o.name), ' ', h('span', { class: 'prefix' }, o.prefix)),
      h('button', { type: 'button', class: 'link', id: `pool-${o.id}`, onclick: () => showPool(o) }, t('pool_notice')));
  });
  const classes = practice
    ? h('fieldset', { class: 'field' }, h('legend', {}, t('vehicle_class')),
      ...['small', 'small_new_energy'].map((c, i) => h('div', { class: 'option' },
        h('input', { type: 'radio', name: 'class', id: `class-${c}`, value: c, checked: i === 0 }),
        h('label', { for: `class-${c}` }, classLabel(c)))))
    : null;
  const next = async () => {
    const office = document.querySelector('input[name=office]:checked')?.value;
    if (!office) return;
    chosen = { office, cls: document.querySelector('input[name=class]:checked')?.value, noticeVersion: null };
    if (practice) {
      try {
        await startPractice(office, chosen.cls);
      } catch (err) {
        error.replaceChildren(errorBanner(err));
      }
      return;
    }
    showNotice(office, error);
  };
  render([1, 1], t('step_basic'),
    error,
    h('fieldset', { class: 'offices' }, h('legend', {}, t('choose_office')), h('ul', { class: 'options' }, options)),
    classes,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go.boot() }, t('back')),
      h('button', { type: 'button', class: 'primary', id: 'office-next', onclick: next }, t('next'))));
  ctx.rerender = () => showOffices(practice);
}

/** 号池公示: releases and available numbers per class (a dialog over the chooser). */
async function showPool(office) {
  let pool;
  try {
    pool = (await get(`/v1/offices/${encodeURIComponent(office.id)}/pool`)).data;
  } catch (err) {
    return dialog(t('pool_notice'), banner('error', errorText(err)), []);
  }
  const tables = pool.classes.map((c) => h('section', { class: 'pool-class' },
    h('h3', {}, `${classLabel(c.class)} · ${t('pool_available')} ${c.available}`),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('pool_release')), h('th', { scope: 'col' }, t('pool_opens')),
        h('th', { scope: 'col' }, t('pool_total')), h('th', { scope: 'col' }, t('pool_available')))),
      h('tbody', {}, c.releases.map((r) => h('tr', {},
        h('td', {}, r.label), h('td', {}, officeTime(r.opens_at)), h('td', {}, r.total), h('td', {}, r.available)))))));
  const close = h('button', { type: 'button', class: 'primary', id: 'pool-close' }, t('pool_close'));
  const dlg = dialog(t('pool_title', { office: office.name }),
    h('div', { class: 'pool', id: 'pool-notice' }, h('p', { class: 'hint' }, t('pool_as_of', { time: officeTime(pool.as_of) })), tables),
    [close]);
  close.addEventListener('click', () => dlg.close());
}

/** 业务须知 with 阅读并同意; the accepted version goes with the application. */
async function showNotice(office, errorBox) {
  let notice;
  try {
    notice = (await get(`/v1/offices/${encodeURIComponent(office)}/notice`)).data;
  } catch (err) {
    return errorBox.replaceChildren(errorBanner(err));
  }
  const agree = h('button', { type: 'button', class: 'primary', id: 'notice-agree' }, t('agree'));
  const cancel = h('button', { type: 'button', class: 'secondary' }, t('cancel'));
  const dlg = dialog(t('notice_title'),
    h('div', { class: 'notice-text', tabindex: '0', id: 'notice-text' },
      h('p', { class: 'hint' }, t('notice_version', { v: notice.version })),
      ...notice.text.split('\n').map((line) => h('p', {}, line))),
    [cancel, agree]);
  cancel.addEventListener('click', () => dlg.close());
  agree.addEventListener('click', () => {
    chosen.noticeVersion = notice.version;
    dlg.close();
    showConfirmInfo();
  });
}

function helpToggle(id, label, text) {
  const box = h('p', { id: `${id}-help`, class: 'help', hidden: true }, text);
  const btn = h('button', { type: 'button', class: 'help-btn', id: `${id}-help-btn`, 'aria-expanded': 'false', 'aria-controls': `${id}-help`, 'aria-label': label, title: label }, '?');
  btn.addEventListener('click', () => {
    box.hidden = !box.hidden;
    btn.setAttribute('aria-expanded', String(!box.hidden));
  });
  return { btn, box };
}

/** Marks the VIN character at `position` (1-based) under the field. */
function vinMarker(vin, position) {
  const chars = [...vin];
  return h('p', { class: 'vin-marker', 'aria-hidden': 'true' },
    chars.map((c, i) => h('span', { class: i + 1 === position ? 'bad' : '' }, c)));
}

/** Stage 1 step 2: VIN and voucher, then the SMS confirmation dialog. */
export function showConfirmInfo() {
  const vinHelp = helpToggle('vin', t('help_vin_label'), t('help_vin'));
  const voucherHelp = helpToggle('voucher', t('help_voucher_label'), t('help_voucher'));
  const vinField = field({ id: 'vin', label: t('vin'), hint: t('vin_hint'), attrs: { autocomplete: 'off', autocapitalize: 'characters', spellcheck: 'false', maxlength: 20 }, extra: vinHelp.btn });
  vinField.querySelector('.label-row').after(vinHelp.box);
  const voucherField = field({ id: 'voucher', label: t('voucher'), hint: t('voucher_hint'), attrs: { autocomplete: 'off', autocapitalize: 'characters', spellcheck: 'false', maxlength: 40 }, extra: voucherHelp.btn });
  voucherField.querySelector('.label-row').after(voucherHelp.box);
  const vinInput = vinField.querySelector('input');
  const voucherInput = voucherField.querySelector('input');
  const errors = h('div', { id: 'confirm-errors' });
  const form = h('form', { novalidate: true, id: 'confirm-form' }, errors, vinField, voucherField,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'confirm-submit' }, t('submit'))));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const vin = vinInput.value.trim().toUpperCase();
    const voucher = voucherInput.value.trim();
    fieldError(vinInput, null);
    fieldError(voucherInput, null);
    vinField.querySelector('.vin-marker')?.remove();
    errors.replaceChildren();
    try {
      const { data } = await post('/v1/vin/check', { vin });
      if (!data.valid) {
        const reason = vinReason(data.reason, data.message);
        fieldError(vinInput, data.position ? t('vin_bad_at', { p: data.position, reason }) : reason);
        if (data.position) vinInput.after(vinMarker(vin, data.position));
        vinInput.focus();
        return;
      }
    } catch (err) {
      return errors.replaceChildren(errorBanner(err));
    }
    if (!voucher) {
      fieldError(voucherInput, t('voucher_hint'));
      return voucherInput.focus();
    }
    confirmDialog(vin, voucher, { vinInput, voucherInput, errors });
  });
  render([1, 2], t('step_confirm'), form);
}

function confirmDialog(vin, voucher, fields) {
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, t('vin')), h('dd', {}, vin), h('dt', {}, t('voucher')), h('dd', {}, voucher));
  let dlg;
  const block = smsBlock({
    id: 'apply',
    label: t('confirm_submit'),
    send: () => post('/v1/sms', { purpose: 'apply' }, { idempotent: true }),
    submit: async (code) => {
      try {
        const { data } = await post('/v1/applications', {
          office: chosen.office, vin, voucher, notice_version: chosen.noticeVersion, sms_code: code,
        }, { idempotent: true });
        dlg.close();
        await loadApp(data.id);
        announce(t('step_service'));
        return showApplication();
      } catch (err) {
        if (err.code.startsWith('sms_')) throw err;
        // Not about the code: back to the form, the reason on its field.
        dlg.close();
        const target = err.field === 'voucher' ? fields.voucherInput : err.field === 'vin' || err.code === 'invalid_vin' ? fields.vinInput : null;
        if (target) { fieldError(target, errorText(err)); target.focus(); } else fields.errors.replaceChildren(errorBanner(err));
      }
    },
  });
  dlg = dialog(t('confirm_submit'), h('div', {}, h('p', {}, t('confirm_text')), facts, block), []);
}
