// The Combined panel: GET /api/combined?delay_ms=D runs a database query (of the
// panel's own latency D) and the upstream call at the same time. Both bars start at 0 on one axis, so the overlap shows.
//
// The answer: {"source":"combined","elapsed_ms":…,
//              "database":{"elapsed_ms":…,"items":[…]},
//              "external":{"elapsed_ms":…,"status":…,"data":…}}
// A side that failed carries {"error":{problem}} instead, and the status is 502 or 504.

import { call, statusLine } from './http.js';
import { el, formatMs, hideProblem, networkProblem, problemOf, setText, showProblem, whileBusy } from './dom.js';
import { clearTimeline, drawTimeline } from './timeline.js';

export function setupCombined() {
  const button = document.getElementById('combined-run');
  const problemBox = document.getElementById('combined-problem');
  const chart = document.getElementById('combined-chart');
  const delayInput = document.getElementById('combined-delay');

  button.addEventListener('click', () => whileBusy(button, runBoth));

  async function runBoth() {
    hideProblem(problemBox);
    setText('combined-status', 'Running the query and the upstream call…');
    let answer;
    try {
      // The database side's latency is the panel's own; the upstream's is the server's.
      answer = await call(`/api/combined?${new URLSearchParams({ delay_ms: delayInput.value })}`);
    } catch (error) {
      setText('combined-status', '');
      showProblem(problemBox, networkProblem(error));
      return;
    }

    const body = answer.data ?? {};
    if (!body.database && !body.external) {
      // Not the combined shape at all: a plain problem (a 404, a 500, a proxy's error page).
      clearTimeline(chart);
      setText('combined-summary', 'Nothing to draw: the request failed.');
      setText('combined-status', `The request failed: ${statusLine(answer)}.`);
      showProblem(problemBox, problemOf(answer));
      return;
    }

    const sides = [
      { name: 'Database', kind: 'db', part: body.database ?? {} },
      { name: 'External API', kind: 'external', part: body.external ?? {} },
    ];
    const failed = sides.filter((side) => side.part.error);
    const roundTrip = answer.end - answer.start;

    const rows = sides.map(({ name, kind, part }) => barOf(name, part.error ? 'failed' : kind, part.elapsed_ms,
      part.error ? `failed: ${part.error.title ?? 'error'}` : undefined));
    rows.push(barOf('Whole request', 'total', body.elapsed_ms));
    const longest = Math.max(1, ...rows.flatMap((row) => row.segments.map((s) => s.to)));
    drawTimeline(chart, rows, { maxMs: longest, rowHeight: 32, labelWidth: 104, valueWidth: 120 });

    setText('combined-summary', summaryOf(sides, body.elapsed_ms, roundTrip));
    if (failed.length) {
      problemBox.replaceChildren(...failed.flatMap(({ name, part }) => [
        el('p', { class: 'problem-title' }, `${name}: ${part.error.status ?? answer.status} ${part.error.title ?? 'Error'}`),
        part.error.detail ? el('p', { class: 'problem-detail' }, part.error.detail) : null,
      ]).filter(Boolean));
      problemBox.hidden = false;
      setText('combined-status', `${statusLine(answer)}: ${failed.map((s) => s.name).join(' and ')} failed.`);
    } else {
      setText('combined-status', `${statusLine(answer)}: both calls answered.`);
    }
  }
}

/** One bar from 0 to `ms`; a side with no time (it failed at once) gets no segment. */
function barOf(label, kind, ms, note) {
  const known = typeof ms === 'number';
  return {
    label,
    segments: known ? [{ from: 0, to: ms, kind }] : [],
    value: note ?? (known ? formatMs(ms) : '—'),
    title: `${label}: ${known ? formatMs(ms) : 'no time reported'}${note ? ` (${note})` : ''}`,
  };
}

function summaryOf(sides, totalMs, roundTrip) {
  const [db, ext] = sides.map(({ part }) => part.elapsed_ms);
  const [dbText, extText] = sides.map(({ part }) => describe(part));
  const times = `The database ${dbText} and the external API ${extText}, side by side.`;
  const both = typeof db === 'number' && typeof ext === 'number';
  const verdict = both && typeof totalMs === 'number'
    ? ` The whole request took ${formatMs(totalMs)}: about the slower call (${formatMs(Math.max(db, ext))}), ` +
      `not the sum of both (${formatMs(db + ext)}).`
    : '';
  return `${times}${verdict} Round trip measured in the browser: ${formatMs(roundTrip)}.`;
}

/** "took 101 ms", "failed after 1.2 ms", "failed". */
function describe(part) {
  const known = typeof part.elapsed_ms === 'number';
  if (part.error) return known ? `failed after ${formatMs(part.elapsed_ms)}` : 'failed';
  return known ? `took ${formatMs(part.elapsed_ms)}` : 'took an unknown time';
}
