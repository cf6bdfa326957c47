// The console's one way to the gateway: the public operator API, with the operator token kept
// in sessionStorage (entered once per browser tab, gone when the tab closes) and sent as Bearer.

const TOKEN_KEY = 'platepool.console.operator_token';

/** The path the API is mounted at: the console lives at `<mount>/console/`. */
export function apiBase() {
  const path = window.location.pathname;
  const at = path.lastIndexOf('/console/');
  return at >= 0 ? path.slice(0, at) : '';
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx: the API's `{"error": {code, message, field, …}}` kept whole. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'http_error';
    this.field = error.field || null;
    this.detail = error;
  }
}

/** Listeners told when the token is refused (401 or 403), so the console shows the gate. */
const refusedListeners = new Set();
export function onTokenRefused(fn) {
  refusedListeners.add(fn);
}

/**
 * Calls the API. `body` is sent as JSON unless `raw` is given (a Blob or text with its
 * `contentType`). Resolves to the parsed JSON answer (or null for an empty one).
 */
export async function api(method, path, { body, query, raw, contentType, token } = {}) {
  let url = apiBase() + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, v);
    }
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  const headers = { Accept: 'application/json' };
  const bearer = token ?? getToken();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    if (contentType) headers['Content-Type'] = contentType;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let answer;
  try {
    answer = await fetch(url, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { code: 'network', message: String(e.message || e) });
  }
  const text = await answer.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!answer.ok) {
    const error = (json && json.error) || { code: 'http_error', message: text.slice(0, 300) || `HTTP ${answer.status}` };
    const err = new ApiError(answer.status, error);
    if ((answer.status === 401 || answer.status === 403) && token === undefined && path.startsWith('/v1/admin/')) {
      refusedListeners.forEach((fn) => fn(err));
    }
    throw err;
  }
  return json;
}

/** Path segment escaping for ids and serials typed by operators. */
export function seg(text) {
  return encodeURIComponent(String(text).trim());
}
