// The Database panel: one GET /api/db with the latency the slider picks.

import { call, statusLine } from './http.js';
import {
  formatMs, hideProblem, networkProblem, prettyJson, problemOf, setText, showProblem, whileBusy,
} from './dom.js';

export function setupDatabase() {
  const form = document.getElementById('db-form');
  const slider = document.getElementById('db-delay');
  const shown = document.getElementById('db-delay-value');
  const button = form.querySelector('button[type="submit"]');
  const problemBox = document.getElementById('db-problem');

  const showDelay = () => { shown.value = `${slider.value} ms`; };
  slider.addEventListener('input', showDelay);
  showDelay();

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(button, runQuery);
  });

  async function runQuery() {
    hideProblem(problemBox);
    setText('db-status', `Querying with ${slider.value} ms of latency…`);
    try {
      const answer = await call(`/api/db?delay_ms=${encodeURIComponent(slider.value)}`);
      setText('db-http', statusLine(answer));
      setText('db-roundtrip', formatMs(answer.end - answer.start));
      setText('db-json', prettyJson(answer.data));
      if (answer.ok) {
        setText('db-elapsed', formatMs(answer.data.elapsed_ms));
        setText('db-rows', String(answer.data.items.length));
        setText('db-status', `Done: the server waited ${formatMs(answer.data.elapsed_ms)} for the query.`);
      } else {
        setText('db-elapsed', '—');
        setText('db-rows', '—');
        setText('db-status', 'The query failed.');
        showProblem(problemBox, problemOf(answer));
      }
    } catch (error) {
      setText('db-status', '');
      showProblem(problemBox, networkProblem(error));
    }
  }
}
