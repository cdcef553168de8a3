// The External API panel: GET /api/external, the server calling an HTTPS upstream.
//
// Success: {"source":"external","url":…,"status":…,"elapsed_ms":…,"data":…}.
// Failure: a 502 (the upstream could not be reached or answered badly) or a 504
// (it took too long), as a problem whose title and detail we show as they are.

import { call, statusLine } from './http.js';
import {
  formatMs, hideProblem, networkProblem, prettyJson, problemOf, setText, showProblem, whileBusy,
} from './dom.js';

export function setupExternal() {
  const button = document.getElementById('external-run');
  const problemBox = document.getElementById('external-problem');

  button.addEventListener('click', () => whileBusy(button, callUpstream));

  async function callUpstream() {
    hideProblem(problemBox);
    setText('external-status', 'Calling the upstream…');
    try {
      const answer = await call('/api/external');
      setText('external-http', statusLine(answer));
      setText('external-roundtrip', formatMs(answer.end - answer.start));
      if (answer.ok) {
        const body = answer.data;
        setText('external-url', body.url);
        setText('external-upstream-status', String(body.status));
        setText('external-elapsed', formatMs(body.elapsed_ms));
        setText('external-json', prettyJson(body.data));
        setText('external-status', `Done: the upstream answered in ${formatMs(body.elapsed_ms)}.`);
      } else {
        for (const id of ['external-url', 'external-upstream-status', 'external-elapsed']) setText(id, '—');
        setText('external-json', 'No data: the call failed.');
        setText('external-status', 'The upstream call failed.');
        showProblem(problemBox, problemOf(answer));
      }
    } catch (error) {
      setText('external-status', '');
      showProblem(problemBox, networkProblem(error));
    }
  }
}
