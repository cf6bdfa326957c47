// Times operators type are the office's local time (UTC+8, SPEC §8); the API speaks RFC 3339.

const OFFSET = '+08:00';
const OFFSET_MS = 8 * 3600 * 1000;

/** A `datetime-local` value (office time) as RFC 3339, or '' when empty. */
export function officeInputToRfc3339(value) {
  const v = (value || '').trim();
  if (!v) return '';
  return /T\d\d:\d\d$/.test(v) ? `${v}:00${OFFSET}` : `${v}${OFFSET}`;
}

/** An RFC 3339 time as a `datetime-local` value in office time. */
export function rfc3339ToOfficeInput(text) {
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() + OFFSET_MS).toISOString().slice(0, 16);
}
