// The public API (API.md), as any integrator's page would call it. The API lives next to the
// page: this module is served at <mount>/api.js, the API at <mount>/v1/…, so the base is this
// module's own folder. Calls send the session cookie (same origin) and `X-Requested-With`, which
// the gateway asks of cookie-authenticated state changes (cross-site guard).
//
// Every answer also measures the clock: `sentAt` (browser time when the request left) and
// `receivedAt` (when the answer arrived) bracket the instant the server computed its `…_in_ms`
// fields; see timing.js for how countdowns use them.

const BASE = new URL('./', import.meta.url);

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.field = e.field || null;
    this.details = e;
  }
}

let keySeq = 0;

/** One call. `idempotent` adds an Idempotency-Key so a retry never debits twice. */
export async function call(method, path, body, { idempotent = false } = {}) {
  const headers = { 'X-Requested-With': 'platepool', Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotent) headers['Idempotency-Key'] = `page-${Date.now()}-${++keySeq}-${Math.random().toString(36).slice(2)}`;
  const sentAt = Date.now();
  let res;
  try {
    res = await fetch(new URL(path.replace(/^\//, ''), BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, { error: { code: 'network', message: String(err) } });
  }
  const receivedAt = Date.now();
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch (_) { data = null; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    err.timing = { sentAt, receivedAt };
    throw err;
  }
  return { data, timing: { sentAt, receivedAt }, status: res.status };
}

export const get = (path) => call('GET', path);
export const post = (path, body, opts) => call('POST', path, body === undefined ? {} : body, opts);

/** The URL of an API path, for links (the printable voucher). */
export const href = (path) => new URL(path.replace(/^\//, ''), BASE).href;
