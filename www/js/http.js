// Talking to the server: one function, call(), that every panel uses.
//
// It times each request in the browser and reads the body once, so a panel gets
// everything it shows in one object. An HTTP error status is an answer, not an
// exception: a 422 or a 502 comes back with `ok: false` and its problem document
// (RFC 9457). Only a network failure (the server is down, the request was stopped)
// rejects.

/**
 * @typedef {object} Answer
 * @property {boolean} ok        true for a 2xx status
 * @property {number} status     the HTTP status code, e.g. 200
 * @property {string} statusText the reason phrase, e.g. "OK"
 * @property {any} data          the parsed JSON body, or null when there is none
 * @property {object|null} problem the body when it is application/problem+json
 * @property {string} url        the absolute URL that was requested
 * @property {Headers} headers   the response headers
 * @property {number} start      performance.now() just before the request started
 * @property {number} end        performance.now() once the whole body was read
 */

/**
 * Sends one request and waits for the whole answer.
 * @param {string} path    a path on this server, e.g. "/api/db?delay_ms=100"
 * @param {object} [options]
 * @param {string} [options.method]  GET unless told
 * @param {any} [options.body]       sent as JSON when given
 * @param {AbortSignal} [options.signal] stops the request
 * @returns {Promise<Answer>}
 */
export async function call(path, { method = 'GET', body, signal } = {}) {
  const init = {
    method,
    signal,
    headers: { Accept: 'application/json, application/problem+json' },
    // Bypass the HTTP cache: every click must reach the server. It also keeps
    // identical concurrent GETs independent (a cache would let one wait for another).
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }

  const start = performance.now();
  const response = await fetch(path, init);
  const text = await response.text();
  const end = performance.now();

  const type = response.headers.get('Content-Type') ?? '';
  const isJson = type.startsWith('application/json') || type.startsWith('application/problem+json');
  // JSON.parse reads every number the server prints, 2.002E2 included.
  const data = text && isJson ? JSON.parse(text) : null;

  return {
    ok: response.ok,
    status: response.status,
    statusText: response.statusText,
    data,
    problem: type.startsWith('application/problem+json') ? data : null,
    url: response.url,
    headers: response.headers,
    start,
    end,
  };
}

/** "200 OK", "502 Bad Gateway": the status line a person reads. */
export function statusLine(answer) {
  return answer.statusText ? `${answer.status} ${answer.statusText}` : String(answer.status);
}

/**
 * When the browser really sent a request and received the last byte of its
 * answer, from the Resource Timing API; null when the browser has no entry for it.
 *
 * A request started with fetch() may first wait in the browser for a free
 * connection: `requestStart` is the moment it left, `responseEnd` the moment its
 * connection was free again. Both are on the same clock as performance.now().
 */
export function wireTiming(url) {
  const entries = performance.getEntriesByName(url, 'resource');
  const entry = entries[entries.length - 1];
  return entry && entry.requestStart > 0 ? { sent: entry.requestStart, received: entry.responseEnd } : null;
}
