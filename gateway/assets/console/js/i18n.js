// Language of the console: zh-CN first, English on request. Every text is written as a pair
// `tr('中文', 'English')` next to where it is used, so the two never drift apart.

const LANG_KEY = 'platepool.console.lang';

let lang = localStorage.getItem(LANG_KEY) === 'en' ? 'en' : 'zh';

export function currentLang() {
  return lang;
}

/** The text in the current language. */
export function tr(zh, en) {
  return lang === 'en' ? en : zh;
}

export function setLang(next) {
  lang = next === 'en' ? 'en' : 'zh';
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
}

/** BCP 47 tag for number and date formatting. */
export function locale() {
  return lang === 'en' ? 'en-GB' : 'zh-CN';
}

export function fmtNumber(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const opts = digits === undefined ? {} : { minimumFractionDigits: digits, maximumFractionDigits: digits };
  return Number(n).toLocaleString(locale(), opts);
}

/** An RFC 3339 time in the office's local time (UTC+8), as operators read it. */
export function fmtTime(rfc3339) {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return d.toLocaleString(locale(), {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  });
}

/** Milliseconds as a figure with its unit. */
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  return `${fmtNumber(ms, ms < 10 ? 2 : 1)} ms`;
}

/** A compact office-time stamp for tables: month, day, hour and minute. */
export function fmtShortTime(rfc3339) {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return d.toLocaleString(locale(), {
    timeZone: 'Asia/Shanghai', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
  });
}
