// The lab's fourth run: N queries over one WebSocket, GET /ws.
//
// Each query is a message {"op":"db","id":i,"delay_ms":D}; the server runs it as a
// task of the socket and answers {"op":"db","id":i,"elapsed_ms":…} when it is done.
// One connection carries all N at once: no browser queue, no six-connection limit.

import { peakInFlight } from './timeline.js';

/** The URL of the demo's socket on this server, ws:// or wss:// as the page was loaded. */
export function socketUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** Opens the socket; resolves once it is open, rejects if it fails or `signal` aborts. */
export function openSocket(signal) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(socketUrl());
    const fail = (error) => { ws.close(); reject(error); };
    const onAbort = () => fail(new DOMException('The run was stopped', 'AbortError'));
    signal?.addEventListener('abort', onAbort, { once: true });
    ws.addEventListener('open', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve(ws);
    }, { once: true });
    ws.addEventListener('error', () => fail(new TypeError('the WebSocket did not open')), { once: true });
  });
}

/**
 * Sends N queries at once over one socket and times each answer.
 * Returns { rows, totalMs, peak, failed, handshakeMs } like the lab's other runs.
 */
export async function overOneSocket(n, delay, signal, tick) {
  const opening = performance.now();
  const ws = await openSocket(signal);
  const handshakeMs = performance.now() - opening;
  const t0 = performance.now();
  const sent = new Array(n);
  const answers = new Array(n);
  try {
    await new Promise((resolve, reject) => {
      let answered = 0;
      const onAbort = () => reject(new DOMException('The run was stopped', 'AbortError'));
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.addEventListener('close', (event) => {
        reject(new TypeError(`the WebSocket closed (${event.code}) before every answer came`));
      });
      ws.addEventListener('message', (event) => {
        const message = JSON.parse(event.data);
        if (message.op !== 'db' || answers[message.id]) return;
        answers[message.id] = { end: performance.now(), ok: !message.error, serverMs: message.elapsed_ms };
        tick();
        answered += 1;
        if (answered === n) {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
      });
      for (let i = 0; i < n; i += 1) {
        sent[i] = performance.now();
        ws.send(JSON.stringify({ op: 'db', id: i, delay_ms: delay }));
      }
    });
  } finally {
    ws.close(1000, 'the run is over');
  }

  const rows = answers.map((answer, i) => ({
    segments: [{ from: sent[i] - t0, to: answer.end - t0, kind: answer.ok ? 'busy' : 'failed' }],
    title: `Query ${i + 1}: sent at ${Math.round(sent[i] - t0)} ms, answered at ${Math.round(answer.end - t0)} ms` +
      ` (${answer.serverMs} ms on the server)`,
  }));
  return {
    rows,
    totalMs: Math.max(...answers.map((a) => a.end)) - t0,
    peak: peakInFlight(answers.map((a, i) => [sent[i], a.end])),
    failed: answers.filter((a) => !a.ok).length,
    handshakeMs,
  };
}
