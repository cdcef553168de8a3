// Blocking the loop: CPU work on the event loop's threads stalls every request;
// the same work offloaded to the pool (GET /api/cpu) stalls none.
//
// One run: as many /api/cpu?ms=M calls as the server has event-loop threads (from
// /api/stats), so that with ?offload=false every one of those threads is busy, while
// /healthz round trips go out one after another. Each round trip is a bar: with
// offload they stay short; on the loop they wait until the CPU work ends.

import { call } from './http.js';
import { formatMs, hideProblem, networkProblem, problemOf, setText, showProblem, whileBusy } from './dom.js';
import { pauseFeed } from './live.js';
import { clearTimeline, drawTimeline } from './timeline.js';

const CPU_MS = 1000;
const WATCH_EXTRA_MS = 300; // round trips go on a little after the CPU work

export function setupLoop() {
  const button = document.getElementById('loop-run');
  const problemBox = document.getElementById('loop-problem');
  button.addEventListener('click', () => whileBusy(button, runBoth));

  async function runBoth() {
    hideProblem(problemBox);
    // The six browser connections: the feed steps aside so the CPU calls and the
    // round trips never wait for one.
    const resume = pauseFeed();
    try {
      const stats = await call('/api/stats');
      if (!stats.ok) throw Object.assign(new Error('stats'), { answer: stats });
      const calls = Math.min(4, Math.max(1, stats.data.threads));
      for (const id of ['loop-offload', 'loop-blocking']) {
        clearTimeline(document.getElementById(`${id}-chart`));
        setText(`${id}-summary`, 'Waiting for its turn…');
      }
      const results = [];
      for (const [id, offload] of [['loop-offload', true], ['loop-blocking', false]]) {
        setText('loop-status', `${offload ? 'Offloaded' : 'On the loop'}: ${calls} × /api/cpu?ms=${CPU_MS}` +
          `${offload ? '' : '&offload=false'} while /healthz goes back and forth…`);
        setText(`${id}-summary`, 'Running…');
        results.push({ id, offload, ...(await measure(calls, offload)) });
      }
      const maxMs = Math.max(...results.map((r) => r.totalMs));
      for (const r of results) draw(r, maxMs, calls, stats.data.threads);
      setText('loop-status', `Done. Longest /healthz round trip: ${formatMs(results[0].worst)} with offload, ` +
        `${formatMs(results[1].worst)} with the work on the loop.`);
    } catch (error) {
      setText('loop-status', 'The demonstration stopped: a request got no answer.');
      showProblem(problemBox, error.answer ? problemOf(error.answer) : networkProblem(error));
    } finally {
      resume();
    }
  }
}

async function measure(calls, offload) {
  const t0 = performance.now();
  const target = `/api/cpu?ms=${CPU_MS}${offload ? '' : '&offload=false'}`;
  const work = Array.from({ length: calls }, () => call(target));
  let working = true;
  const allDone = Promise.all(work).finally(() => { working = false; });
  const trips = [];
  let stopAt = Infinity;
  while (performance.now() < stopAt) {
    const start = performance.now();
    const answer = await call('/healthz');
    trips.push({ from: start - t0, to: answer.end - t0, ok: answer.ok });
    if (!working && stopAt === Infinity) stopAt = performance.now() + WATCH_EXTRA_MS;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const answers = await allDone;
  const bad = answers.find((a) => !a.ok);
  if (bad) throw Object.assign(new Error('cpu'), { answer: bad });
  return {
    work: answers.map((a) => ({ from: a.start - t0, to: a.end - t0 })),
    trips,
    worst: Math.max(...trips.map((t) => t.to - t.from)),
    totalMs: performance.now() - t0,
  };
}

function draw(result, maxMs, calls, threads) {
  const rows = [
    ...result.work.map((w, i) => ({
      segments: [{ from: w.from, to: w.to, kind: 'server' }],
      title: `CPU call ${i + 1}: ${formatMs(w.to - w.from)}`,
    })),
    ...result.trips.map((t, i) => ({
      segments: [{ from: t.from, to: t.to, kind: t.ok ? 'busy' : 'failed' }],
      title: `/healthz ${i + 1}: ${formatMs(t.to - t.from)}`,
    })),
  ];
  drawTimeline(document.getElementById(`${result.id}-chart`), rows, { maxMs, rowHeight: 4 });
  const where = result.offload ? 'on the offload pool' : `on the event loop's ${threads === 1 ? 'thread' : 'threads'}`;
  setText(`${result.id}-summary`, `${calls} CPU ${calls === 1 ? 'call' : 'calls'} of ${formatMs(CPU_MS)} ${where}; ` +
    `${result.trips.length} /healthz round trips meanwhile, the longest ${formatMs(result.worst)}.`);
}
