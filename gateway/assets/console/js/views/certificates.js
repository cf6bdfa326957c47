// Certificate import (SPEC R5.3): a CSV (header vin,voucher,class,energy) or JSON file sent to
// POST /v1/admin/certificates as it is; the good rows are imported and each bad row is listed
// with its number (and CSV line) and reason.

import { api } from '../api.js';
import { tr, fmtNumber } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy } from '../dom.js';

/** Largest import the API accepts (API.md: 16 MiB). */
const IMPORT_BYTES_MAX = 16 * 1024 * 1024;

function contentTypeOf(file) {
  const name = file.name.toLowerCase();
  if (name.endsWith('.json') || file.type === 'application/json') return 'application/json';
  return 'text/csv';
}

export function render(root) {
  const input = h('input', { type: 'file', id: 'cert-file', accept: '.csv,.json,text/csv,application/json' });
  const chosen = h('p', { class: 'hint', id: 'cert-chosen', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', id: 'cert-import' }, tr('导入', 'Import'));
  const result = h('div', { id: 'cert-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', novalidate: true },
    field({
      label: tr('凭证记录文件（CSV 或 JSON）', 'Certificate records file (CSV or JSON)'), input, field: 'header',
      hint: tr('CSV 首行为 vin,voucher,class,energy；JSON 为 [{"vin","voucher","class","energy"}]。energy 取 fuel、bev、phev、fcev。同一 VIN 再次导入即更新，重复导入是安全的。',
        'CSV with the header vin,voucher,class,energy; JSON as [{"vin","voucher","class","energy"}]. energy is fuel, bev, phev or fcev. Records are kept by VIN, so importing again is safe.'),
    }),
    chosen,
    h('div', { class: 'actions' }, button));
  input.addEventListener('change', () => {
    const f = input.files[0];
    chosen.textContent = f ? tr(`已选择 ${f.name}（${fmtNumber(f.size)} 字节）`, `Chosen: ${f.name} (${fmtNumber(f.size)} bytes)`) : '';
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(form);
    const file = input.files[0];
    if (!file) {
      showError(form, { code: 'choose', field: 'header', message: tr('请选择要导入的文件。', 'Choose a file to import.') });
      return;
    }
    if (file.size > IMPORT_BYTES_MAX) {
      showError(form, { code: 'payload_too_large', field: 'header', message: '' });
      return;
    }
    busy(button, async () => {
      replace(result, h('p', { class: 'loading' }, tr('正在导入…', 'Importing…')));
      try {
        const r = await api('POST', '/v1/admin/certificates', { raw: file, contentType: contentTypeOf(file) });
        replace(result, report(file.name, r));
      } catch (err) {
        replace(result);
        showError(form, { ...err, message: err.message, field: err.field || 'header' });
        if (err.detail?.imported !== undefined) {
          replace(result, h('p', { class: 'notice warn' }, tr(`已持久保存 ${fmtNumber(err.detail.imported)} 条；可再次导入整个文件。`,
            `${fmtNumber(err.detail.imported)} records are durable; importing the whole file again is safe.`)));
        }
      }
    });
  });
  replace(root,
    h('h1', {}, tr('凭证记录导入', 'Certificate import')),
    h('p', { class: 'lede' }, tr('导入车辆的合格证或进口凭证记录，供所有办事处核验 VIN 与选号凭证。好的行会被导入，每个有问题的行都会列出原因。',
      'Import the vehicles’ certificate records, which every office checks VIN and voucher against. Good rows are imported; each bad row is listed with its reason.')),
    form, result);
}

function report(name, r) {
  const bad = r.rejected || [];
  return h('div', {},
    h('div', { class: `notice ${bad.length ? 'warn' : 'ok'}`, role: 'status', id: 'cert-summary' },
      h('p', {}, h('strong', {}, name), tr('：已导入 ', ': imported '),
        h('strong', { id: 'cert-imported', 'data-value': r.imported }, fmtNumber(r.imported)),
        tr(' 条，拒绝 ', ' records, rejected '),
        h('strong', { id: 'cert-rejected', 'data-value': bad.length }, fmtNumber(bad.length)), tr(' 条。', '.'))),
    bad.length ? table({
      caption: tr('被拒绝的行', 'Rejected rows'),
      columns: [{ label: tr('记录序号', 'Record'), num: true }, { label: tr('文件行号', 'Line'), num: true }, { label: tr('原因', 'Reason') }],
      rows: bad.map((b) => [String(b.row), b.line ? String(b.line) : '—', h('span', { 'data-row-error': b.row }, b.reason)]),
    }) : null);
}
