// The Concurrency lab: N queries of the same latency, sent four ways, then N
// requests that each block a server thread.
//
//   1. all at once from the browser   N fetches started together
//   2. one after another              each fetch started when the previous one answered
//   3. fan-out on the server          one /api/db/parallel request; the server runs the N
//   4. over one WebSocket             N messages on one connection (js/socket.js)
//   5. a thread per request           N fetches of /api/blocking: each holds an offload
//                                     thread for the latency, so they end in steps
//
// The server's side comes from /api/stats: its thread counts, and the peak number of
// requests in flight during each run (POST /api/stats/peak starts a new peak).
//
// Every bar is measured here with performance.now(), except the query bars of run 3,
// which the server times and reports (elapsed_ms of each query). All four charts
// share one time axis, so their lengths compare.
//
// The browser opens at most six connections to the server, and the lab measures
// what that does, so while it runs the Items panel's live feed (which holds one of
// the six) is closed: the lab has all six to itself.

import { call, wireTiming } from './http.js';
import { el, formatMs, hideProblem, networkProblem, problemOf, setText, showProblem, whileBusy } from './dom.js';
import { pauseFeed } from './live.js';
import { clearTimeline, drawTimeline, peakInFlight } from './timeline.js';
import { overOneSocket } from './socket.js';

/** /api/db/parallel takes at most this many queries per request. */
const MAX_QUERIES_PER_REQUEST = 100;

const RUNS = [
  { id: 'run-at-once', name: 'all at once', measure: allAtOnce },
  { id: 'run-sequential', name: 'one after another', measure: oneAfterAnother },
  { id: 'run-parallel', name: 'fan-out on the server', measure: serverFanOut },
  { id: 'run-socket', name: 'over one WebSocket', measure: overOneSocket },
  { id: 'run-blocking', name: 'a thread per request', measure: threadPerRequest },
];

export function setupLab() {
  const form = document.getElementById('lab-form');
  const runButton = document.getElementById('lab-run');
  const stopButton = document.getElementById('lab-stop');
  const progress = document.getElementById('lab-progress');
  const problemBox = document.getElementById('lab-problem');
  let controller = null;

  // The browser keeps 250 timing entries unless told; a run of 200 needs more.
  performance.setResourceTimingBufferSize(2000);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const n = Number(form.elements.n.value);
    const delay = Number(form.elements.delay.value);
    whileBusy(runButton, () => runAll(n, delay));
  });
  stopButton.addEventListener('click', () => controller?.abort());

  async function runAll(n, delay) {
    hideProblem(problemBox);
    const resumeFeed = pauseFeed();
    controller = new AbortController();
    stopButton.disabled = false;
    progress.hidden = false;
    progress.max = 4 * n + Math.ceil(n / MAX_QUERIES_PER_REQUEST);
    progress.value = 0;
    const tick = () => { progress.value += 1; };

    for (const run of RUNS) {
      clearTimeline(document.querySelector(`#${run.id} svg`));
      setText(`${run.id}-summary`, 'Waiting for its turn…');
    }

    const done = [];
    try {
      const server = await serverStats('GET', controller.signal);
      showServerSide(server);
      for (const [index, run] of RUNS.entries()) {
        setText('lab-status', `Run ${index + 1} of ${RUNS.length} (${run.name}): ${n} ${index === 4 ? 'requests' : 'queries'}…`);
        setText(`${run.id}-summary`, 'Running…');
        await serverStats('POST', controller.signal);
        performance.clearResourceTimings();
        const result = await run.measure(n, delay, controller.signal, tick);
        const after = await serverStats('GET', controller.signal);
        result.server = after;
        done.push({ run, result });
        // Each new run may stretch the shared axis: draw them all again.
        const maxMs = Math.max(1, ...done.map((d) => d.result.totalMs));
        for (const d of done) drawRun(d.run, d.result, n, delay, maxMs);
      }
      const totals = done.map((d) => `${d.run.name}: ${formatMs(d.result.totalMs)}`).join('; ');
      setText('lab-status', `Done. ${capitalize(totals)}. N × latency = ${formatMs(n * delay)}.`);
    } catch (error) {
      const stopped = error.name === 'AbortError';
      setText('lab-status', stopped ? 'Stopped.' : 'The lab stopped: a request got no answer.');
      if (!stopped) showProblem(problemBox, networkProblem(error));
      const [cut, ...rest] = RUNS.slice(done.length);
      setText(`${cut.id}-summary`, 'Stopped before it finished.');
      for (const run of rest) setText(`${run.id}-summary`, 'Not run.');
    } finally {
      if (document.activeElement === stopButton) runButton.focus();
      stopButton.disabled = true;
      progress.hidden = true;
      controller = null;
      resumeFeed();
    }
  }
}

// ───── The server's side ─────

/** GET /api/stats, or POST /api/stats/peak (which starts a new peak); its JSON. */
async function serverStats(method, signal) {
  const answer = await call(method === 'POST' ? '/api/stats/peak' : '/api/stats', { method, signal });
  if (!answer.ok) throw Object.assign(new Error(`/api/stats answered ${answer.status}`), { name: 'StatsError' });
  return answer.data;
}

function showServerSide(stats) {
  const box = document.getElementById('lab-server');
  box.replaceChildren(
    "The server's side: ",
    el('strong', { class: 'lab-threads' }, `${stats.threads} event-loop ${stats.threads === 1 ? 'thread' : 'threads'}`),
    ' serve every request; ',
    el('strong', { class: 'lab-offload-threads' }, `${stats.offload_threads} offload ${stats.offload_threads === 1 ? 'thread' : 'threads'}`),
    ' run the blocking calls of the fifth run.');
  box.dataset.threads = String(stats.threads);
  box.dataset.offloadThreads = String(stats.offload_threads);
}

// ───── The ways of sending ─────
// Each returns { rows, totalMs, ... } with times in ms since the run started.

async function allAtOnce(n, delay, signal, tick) {
  const t0 = performance.now();
  const answers = await Promise.all(range(n).map(async (i) => {
    const answer = await call(queryUrl('/api/db', { delay_ms: delay }, i), { signal });
    tick();
    return answer;
  }));
  return browserRun(answers, t0);
}

async function oneAfterAnother(n, delay, signal, tick) {
  const t0 = performance.now();
  const answers = [];
  for (const i of range(n)) {
    answers.push(await call(queryUrl('/api/db', { delay_ms: delay }, i), { signal }));
    tick();
  }
  return browserRun(answers, t0);
}

async function threadPerRequest(n, delay, signal, tick) {
  const t0 = performance.now();
  const answers = await Promise.all(range(n).map(async (i) => {
    const answer = await call(queryUrl('/api/blocking', { ms: delay }, i), { signal });
    tick();
    return answer;
  }));
  return browserRun(answers, t0);
}

async function serverFanOut(n, delay, signal, tick) {
  // More than 100 queries take several requests, sent together.
  const sizes = range(Math.ceil(n / MAX_QUERIES_PER_REQUEST))
    .map((i) => Math.min(MAX_QUERIES_PER_REQUEST, n - i * MAX_QUERIES_PER_REQUEST));
  const t0 = performance.now();
  const answers = await Promise.all(sizes.map(async (queries, i) => {
    const answer = await call(queryUrl('/api/db/parallel', { queries, delay_ms: delay }, i), { signal });
    tick();
    return answer;
  }));
  await nextTask();

  const rows = [];
  let serverMs = 0;
  let failed = 0;
  for (const answer of answers) {
    const sent = wireTiming(answer.url)?.sent ?? answer.start;
    rows.push({
      segments: segmentsOf(answer, sent, t0),
      title: `The request: ${answer.ok ? 'answered' : `failed (${answer.status})`} after ${formatMs(answer.end - answer.start)}`,
    });
    if (!answer.ok) {
      failed += 1;
      continue;
    }
    serverMs = Math.max(serverMs, answer.data.elapsed_ms);
    // The server times each query from the moment it starts them all; we place
    // its bars at the moment the request left the browser.
    for (const result of answer.data.results) {
      rows.push({
        segments: [{ from: sent - t0, to: sent - t0 + result.elapsed_ms, kind: 'server' }],
        title: `Query ${result.query + 1}: ${formatMs(result.elapsed_ms)} on the server`,
      });
    }
  }
  const totalMs = Math.max(...answers.map((a) => a.end)) - t0;
  return { rows, totalMs, serverMs, requests: answers.length, failed, problem: firstProblem(answers) };
}

/** The rows, total and peak concurrency of a run of /api/db requests from the browser. */
async function browserRun(answers, t0) {
  // The timing entry of the last response may land a moment after its body: wait one task.
  await nextTask();
  const timings = answers.map((answer) => ({ answer, wire: wireTiming(answer.url) }));
  const measuredSent = timings.every((t) => t.wire !== null);

  const rows = timings.map(({ answer, wire }, i) => {
    const sent = wire?.sent ?? answer.start;
    return {
      segments: segmentsOf(answer, sent, t0),
      title: `Request ${i + 1}: started at ${formatMs(answer.start - t0)}, waited ${formatMs(sent - answer.start)}` +
        ` for a connection, answered at ${formatMs(answer.end - t0)}` + (answer.ok ? '' : ` with ${answer.status}`),
    };
  });
  return {
    rows,
    totalMs: Math.max(...answers.map((a) => a.end)) - t0,
    // On the wire: from the moment a request left to the last byte of its answer,
    // when its connection is free for the next one.
    peak: measuredSent ? peakInFlight(timings.map((t) => [t.wire.sent, t.wire.received])) : null,
    failed: answers.filter((a) => !a.ok).length,
    problem: firstProblem(answers),
  };
}

/** A bar: pale while the request waits in the browser, solid once it was sent. */
function segmentsOf(answer, sent, t0) {
  const segments = [];
  if (sent - answer.start > 0.5) segments.push({ from: answer.start - t0, to: sent - t0, kind: 'wait' });
  segments.push({ from: sent - t0, to: answer.end - t0, kind: answer.ok ? 'busy' : 'failed' });
  return segments;
}


// ───── Drawing a finished run ─────

function drawRun(run, result, n, delay, maxMs) {
  const svg = document.querySelector(`#${run.id} svg`);
  // Bars get thinner as they get more numerous, so that 200 still fit on a screen;
  // the same N gives the same thickness in all three charts.
  const rowHeight = Math.max(2, Math.min(10, Math.floor(240 / n)));
  drawTimeline(svg, result.rows, { maxMs, rowHeight });

  const summary = document.getElementById(`${run.id}-summary`);
  const parts = [
    el('span', { class: 'run-total' }, 'Total: ', el('strong', {}, formatMs(result.totalMs)), '.'),
    ' ',
    el('span', { class: 'run-estimate' }, `N × latency = ${n} × ${formatMs(delay)} = ${formatMs(n * delay)}.`),
    ' ',
  ];
  if (run.id === 'run-blocking') {
    const threads = result.server?.offload_threads;
    parts.push(`The server ran them ${threads} at a time, one offload thread each (--offload-threads ${threads}): ` +
      `they finish in steps of ${threads}, every ${formatMs(delay)}, as on a server that gives every request a worker` +
      (result.peak !== null && result.peak < n ? ` (and the browser kept at most ${result.peak} on the wire).` : '.'));
  } else if (run.id === 'run-socket') {
    parts.push(`All ${n} went out on one connection (opened in ${formatMs(result.handshakeMs)} before the run); ` +
      `at most ${result.peak} were in flight on it at once.`);
  } else if (run.id === 'run-parallel') {
    parts.push(`${n} queries ran on the server at once; by its own clock they took ${formatMs(result.serverMs)}` +
      (result.requests > 1 ? ` (in ${result.requests} requests of at most ${MAX_QUERIES_PER_REQUEST}).` : '.'));
  } else if (result.peak === null) {
    parts.push('This browser did not say when each request left, so waiting time is not shown.');
  } else if (result.peak === 1) {
    parts.push('One request was on the wire at a time.');
  } else if (result.peak < n) {
    parts.push(`At most ${result.peak} were on the wire at once; the others waited in the browser for a connection.`);
  } else {
    parts.push(`All ${n} were on the wire at once.`);
  }
  if (result.server) {
    const s = result.server;
    parts.push(' ', el('span', { class: 'run-server' }, 'On the server: at most ',
      el('strong', { class: 'run-peak' }, String(s.peak_in_flight)),
      ` ${s.peak_in_flight === 1 ? 'request' : 'requests'} in flight at once, on ${s.threads} ` +
      `${s.threads === 1 ? 'thread' : 'threads'}.`));
  }
  if (result.failed) {
    const p = result.problem;
    parts.push(` ${result.failed} failed${p ? `: ${p.status} ${p.title}${p.detail ? ` (${p.detail})` : ''}` : ''}.`);
  }
  summary.replaceChildren(...parts);
}

// ───── Small helpers ─────

let urlCounter = 0;

/**
 * A URL that no other request of the page uses. The server ignores the extra
 * `lab` parameter; it lets us find each request's own Resource Timing entry.
 */
function queryUrl(path, params, i) {
  urlCounter += 1;
  return `${path}?${new URLSearchParams({ ...params, lab: `${urlCounter}-${i}` })}`;
}

function firstProblem(answers) {
  const bad = answers.find((a) => !a.ok);
  return bad ? problemOf(bad) : null;
}

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

function nextTask() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
