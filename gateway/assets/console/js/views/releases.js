// Releases (SPEC R5.2): the office's releases with their counts and withdrawal, a new release by
// patterns or by serials whose count is PREVIEWED (POST …/releases/preview, validated exactly as
// the release, saving nothing) before it can be saved, and the withdrawal of a single number.

import { api, seg } from '../api.js';
import { tr, fmtNumber, fmtTime, fmtShortTime } from '../i18n.js';
import { h, field, table, replace, showError, clearErrors, busy, toast, errorText } from '../dom.js';
import { officeInputToRfc3339 } from '../office-time.js';

/** Patterns or serials as typed: one per line, or separated by commas or spaces. */
function splitList(text) {
  return text.split(/[\s,，、;；]+/).map((s) => s.trim()).filter(Boolean);
}

export function render(root, ctx) {
  const office = ctx.office;
  const listBox = h('div', { id: 'release-list' }, h('p', { class: 'loading' }, tr('正在加载…', 'Loading…')));
  const form = releaseForm(office, () => loadList());
  const withdrawForm = numberWithdrawal(office, () => loadList());
  replace(root,
    h('h1', {}, tr('号码投放', 'Releases'), ' · ', ctx.officeInfo?.name || office),
    h('p', { class: 'lede' }, tr('按号码规则或逐个列出号码投放到号池；保存前先预览将新增的号码数量。已占用和已选定的号码不会因撤回而被收回。',
      'Release numbers into the pool by patterns or by a list of serials; preview how many numbers it adds before saving. Withdrawing never takes held or claimed numbers from their holders.')),
    h('h2', {}, tr('已投放', 'Releases in the pool')), listBox,
    h('h2', { id: 'new-release-heading' }, tr('新建投放', 'New release')), form.el,
    h('h2', {}, tr('撤回单个号码', 'Withdraw one number')), withdrawForm);
  form.init(ctx);

  async function loadList() {
    try {
      const stats = await api('GET', `/v1/admin/offices/${seg(office)}/stats`);
      replace(listBox, releaseTable(office, stats, loadList));
    } catch (err) {
      replace(listBox, h('p', { class: 'notice bad' }, errorText(err)));
    }
  }
  loadList();
}

function releaseState(r, asOf) {
  if (r.withdrawn_release) return h('span', { class: 'tag bad' }, tr('已撤回', 'withdrawn'));
  if (new Date(r.opens_at) > asOf) return h('span', { class: 'tag wait' }, tr('未开放', 'not open yet'));
  if (new Date(r.custom_from) > asOf) return h('span', { class: 'tag wait' }, tr('仅随机', 'random only'));
  return h('span', { class: 'tag ok' }, tr('开放中', 'open'));
}

function releaseTable(office, stats, reload) {
  const asOf = new Date(stats.as_of);
  const rows = [];
  const releases = [];
  for (const c of stats.classes) {
    for (const r of c.releases) releases.push({ ...r, class: c.class });
  }
  releases.sort((a, b) => a.id - b.id);
  for (const r of releases) {
    const cell = h('div', { class: 'actions' });
    const ask = h('button', {
      type: 'button', class: 'secondary small', 'data-withdraw': r.id, disabled: r.withdrawn_release,
      onclick: () => {
        replace(cell,
          h('button', {
            type: 'button', class: 'danger small', 'data-confirm-withdraw': r.id,
            onclick: async (e) => {
              await busy(e.currentTarget, async () => {
                try {
                  const out = await api('DELETE', `/v1/admin/offices/${seg(office)}/releases/${r.id}`);
                  toast(tr(`投放 #${r.id} 已撤回 ${fmtNumber(out.withdrawn)} 个号码。`, `Release #${r.id}: ${fmtNumber(out.withdrawn)} numbers withdrawn.`));
                  reload();
                } catch (err) {
                  replace(cell, h('span', { class: 'field-error', role: 'alert' }, errorText(err)));
                }
              });
            },
          }, tr(`确认撤回 #${r.id}`, `Confirm: withdraw #${r.id}`)),
          h('button', { type: 'button', class: 'secondary small', onclick: () => replace(cell, ask) }, tr('取消', 'Cancel')));
        cell.querySelector('button').focus();
      },
    }, tr('撤回', 'Withdraw'));
    cell.append(ask);
    rows.push([`#${r.id}`, r.class, r.label, fmtShortTime(r.opens_at), fmtShortTime(r.custom_from),
      fmtNumber(r.total), fmtNumber(r.available), fmtNumber(r.held), fmtNumber(r.claimed),
      fmtNumber(r.issued), fmtNumber(r.withdrawn), releaseState(r, asOf), cell]);
  }
  return table({
    caption: tr(`截至 ${fmtTime(stats.as_of)}`, `As of ${fmtTime(stats.as_of)}`),
    columns: [
      { label: tr('编号', 'Id') }, { label: tr('号牌类别', 'Class') }, { label: tr('名称', 'Label') },
      { label: tr('开放时间', 'Opens') }, { label: tr('自编可选自', 'Custom from') },
      { label: tr('总数', 'Total'), num: true }, { label: tr('可选', 'Available'), num: true },
      { label: tr('占用中', 'Held'), num: true }, { label: tr('已选定', 'Claimed'), num: true },
      { label: tr('已登记', 'Issued'), num: true }, { label: tr('已撤回', 'Withdrawn'), num: true },
      { label: tr('状态', 'State') }, { label: tr('操作', 'Action') },
    ],
    rows,
    rowClass: (i) => (releases[i].withdrawn_release ? 'withdrawn' : null),
    empty: tr('这个办事处还没有投放号码。', 'This office has released no numbers yet.'),
  });
}

/** The new-release form with its preview. Saving is possible only for the body last previewed. */
function releaseForm(office, onSaved) {
  const classSelect = h('select', { id: 'release-class' });
  const label = h('input', { type: 'text', id: 'release-label', class: 'wide', maxlength: 200 });
  const opensAt = h('input', { type: 'datetime-local', id: 'release-opens-at', step: 1 });
  const customFrom = h('input', { type: 'datetime-local', id: 'release-custom-from', step: 1 });
  const byPatterns = h('input', { type: 'radio', name: 'release-source', id: 'release-by-patterns', value: 'patterns', checked: true });
  const bySerials = h('input', { type: 'radio', name: 'release-source', id: 'release-by-serials', value: 'serials' });
  const patterns = h('textarea', { id: 'release-patterns', rows: 3, spellcheck: 'false' });
  const serials = h('textarea', { id: 'release-serials', rows: 5, spellcheck: 'false' });
  const patternsField = field({
    label: tr('号码规则', 'Patterns'), input: patterns, field: 'patterns',
    hint: tr('每行或以逗号分隔一个规则：# 任一数字，@ 任一字母（不含 I、O），[DF] 其中之一，其余字符照写。例：A####、D@####。',
      'One pattern per line or comma-separated: # any digit, @ any letter (not I or O), [DF] one of the set, anything else itself. E.g. A####, D@####.'),
  });
  const serialsField = field({
    label: tr('号码清单', 'Serials'), input: serials, field: 'serials',
    hint: tr('每行或以逗号分隔一个号码（不含省份和发牌机关代号），例：A1234。', 'One serial per line or comma-separated, without the prefix, e.g. A1234.'),
  });
  serialsField.hidden = true;
  const previewButton = h('button', { type: 'button', id: 'release-preview', class: 'secondary' }, tr('预览数量', 'Preview the count'));
  const saveButton = h('button', { type: 'submit', id: 'release-save', disabled: true }, tr('保存投放', 'Save the release'));
  const result = h('div', { id: 'release-preview-result', 'aria-live': 'polite' });
  const saved = h('div', { id: 'release-saved', 'aria-live': 'polite' });
  let previewed = null; // the JSON body the shown preview is for

  const el = h('form', { class: 'stack', novalidate: true, 'aria-labelledby': 'new-release-heading' },
    h('div', { class: 'grid-fields' },
      field({ label: tr('号牌类别', 'Plate class'), input: classSelect, field: 'class' }),
      field({ label: tr('名称（公示用）', 'Label (shown in the pool notice)'), input: label, field: 'label',
        hint: tr('留空则以规则命名。', 'Empty: named after the patterns.') })),
    h('div', { class: 'grid-fields' },
      field({ label: tr('开放时间', 'Opens at'), input: opensAt, field: 'opens_at',
        hint: tr('办事处当地时间（UTC+8）；留空为立即开放。', 'Office time (UTC+8); empty: opens now.') }),
      field({ label: tr('自编选号可用自', 'Custom selection from'), input: customFrom, field: 'custom_from',
        hint: tr('此前这些号码只供随机选号；留空为开放即可自编。', 'Until then the numbers are for random draws only; empty: from the opening.') })),
    h('fieldset', {},
      h('legend', {}, tr('号码来源', 'Numbers by')),
      h('div', { class: 'choices' },
        h('label', { class: 'choice', for: 'release-by-patterns' }, byPatterns, tr('号码规则', 'patterns')),
        h('label', { class: 'choice', for: 'release-by-serials' }, bySerials, tr('逐个列出', 'a list of serials'))),
      patternsField, serialsField),
    h('div', { class: 'actions' }, previewButton, saveButton),
    result, saved);

  function body() {
    const b = { class: classSelect.value, label: label.value.trim() };
    const opens = officeInputToRfc3339(opensAt.value);
    const custom = officeInputToRfc3339(customFrom.value);
    if (opens) b.opens_at = opens;
    if (custom) b.custom_from = custom;
    if (bySerials.checked) b.serials = splitList(serials.value);
    else b.patterns = splitList(patterns.value);
    return b;
  }

  /** The item a `patterns[i]` / `serials[i]` error is about, added to its message. */
  function withItem(err, b) {
    const m = /^(patterns|serials)\[(\d+)\]/.exec(err.field || '');
    if (!m) return err;
    const item = b[m[1]]?.[Number(m[2])];
    return { ...err, code: 'annotated', message: `${errorText(err)} ${tr(`（第 ${Number(m[2]) + 1} 项：${item}）`, `(item ${Number(m[2]) + 1}: ${item})`)}` };
  }

  function invalidate() {
    if (previewed !== null) {
      previewed = null;
      saveButton.disabled = true;
      replace(result, h('p', { class: 'hint' }, tr('内容已更改，请重新预览。', 'Changed: preview again.')));
    }
  }
  el.addEventListener('input', invalidate);
  el.addEventListener('change', () => {
    patternsField.hidden = bySerials.checked;
    serialsField.hidden = !bySerials.checked;
    invalidate();
  });

  previewButton.addEventListener('click', () => busy(previewButton, async () => {
    clearErrors(el);
    replace(saved);
    const b = body();
    try {
      const p = await api('POST', `/v1/admin/offices/${seg(office)}/releases/preview`, { body: b });
      previewed = JSON.stringify(b);
      saveButton.disabled = false;
      replace(result, previewNotice(p));
    } catch (err) {
      previewed = null;
      saveButton.disabled = true;
      replace(result);
      showError(el, withItem(err, b));
    }
  }));

  el.addEventListener('submit', (e) => {
    e.preventDefault();
    const b = body();
    if (previewed === null || JSON.stringify(b) !== previewed) {
      invalidate();
      return;
    }
    busy(saveButton, async () => {
      clearErrors(el);
      try {
        const r = await api('POST', `/v1/admin/offices/${seg(office)}/releases`, { body: b });
        replace(result);
        replace(saved, h('div', { class: 'notice ok', role: 'status' },
          h('p', {}, tr('已保存投放 ', 'Saved release '), h('strong', {}, `#${r.id}`), tr('：', ': '),
            h('strong', { 'data-total': r.total, id: 'release-saved-total' }, fmtNumber(r.total)),
            tr(' 个号码，', ' numbers, '), r.label, tr('，开放时间 ', ', opening '), fmtTime(r.opens_at), '.')));
        patterns.value = '';
        serials.value = '';
        label.value = '';
        onSaved();
      } catch (err) {
        showError(el, withItem(err, b));
      }
    }).finally(() => {
      previewed = null;
      saveButton.disabled = true;
    });
  });

  async function init() {
    try {
      const doc = await api('GET', `/v1/offices/${seg(office)}`);
      replace(classSelect, doc.classes.map((c) => h('option', { value: c }, c)));
    } catch (err) {
      showError(el, err);
    }
  }
  return { el, init };
}

function previewNotice(p) {
  const skipped = p.named - p.total;
  return h('div', { class: 'notice preview-result', role: 'status' },
    h('p', {}, tr('保存后将新增 ', 'Saving adds '),
      h('strong', { id: 'release-preview-total', 'data-total': p.total }, fmtNumber(p.total)),
      tr(' 个号码。', ' numbers.')),
    skipped > 0 ? h('p', {}, tr(`所列 ${fmtNumber(p.named)} 个号码中有 ${fmtNumber(skipped)} 个已在号池中，将被跳过。`,
      `Of the ${fmtNumber(p.named)} numbers named, ${fmtNumber(skipped)} are already in the pool and are skipped.`)) : null,
    p.sample?.length ? h('p', { class: 'hint' }, tr('从 ', 'From '), h('span', { class: 'mono' }, p.sample.slice(0, 5).map((s) => s.serial).join(' ')),
      p.last && p.total > 5 ? [' … ', h('span', { class: 'mono' }, p.last.serial)] : null) : null,
    h('p', { class: 'hint' }, tr('仅为预览，尚未保存。', 'A preview: nothing is saved yet.')));
}

function numberWithdrawal(office, reload) {
  const serial = h('input', { type: 'text', id: 'withdraw-serial', class: 'mono', autocomplete: 'off', spellcheck: 'false' });
  const button = h('button', { type: 'submit', class: 'danger' }, tr('撤回号码', 'Withdraw the number'));
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', novalidate: true },
    field({ label: tr('号码', 'Serial'), input: serial, field: 'serial',
      hint: tr('只能撤回可选的号码；占用中或已选定的号码不能撤回。', 'Only an available number can be withdrawn; held or claimed ones cannot.') }),
    h('div', { class: 'actions' }, button),
    out);
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
        const r = await api('DELETE', `/v1/admin/offices/${seg(office)}/plates/${seg(serial.value)}`);
        replace(out, h('p', { class: 'notice ok', role: 'status' }, tr(`已撤回 ${r.plate}。`, `${r.plate} withdrawn.`)));
        serial.value = '';
        reload();
      } catch (err) {
        showError(form, { ...err, message: err.message, field: err.field || 'serial' });
      }
    });
  });
  return form;
}
