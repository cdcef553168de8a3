// The Jobs panel: POST /api/jobs starts a report that outlives its request; its
// progress comes live from the event feed (event: job), never by polling.
//
//   POST /api/jobs {"queries","delay_ms","parallel","cpu_ms"} → 202 + the job
//   DELETE /api/jobs/{id}                                    → 202, or 409 once it finished
//   GET /api/jobs                                            → the newest jobs, to catch up
//
// A job: {"id","state","progress","created_at","started_at","finished_at","result","error"}.

import { call, statusLine } from './http.js';
import { el, formatMs, hideProblem, problemOf, setText, showProblem, whileBusy, networkProblem } from './dom.js';
import { onFeed, startFeed } from './live.js';

const SHOWN = 10; // the newest jobs on the panel
const FINAL = new Set(['done', 'failed', 'cancelled']);

export function setupJobs() {
  const form = document.getElementById('jobs-form');
  const startButton = document.getElementById('jobs-start');
  const list = document.getElementById('jobs-list');
  const problemBox = document.getElementById('jobs-problem');
  /** The newest version of each job seen, by id. */
  const jobs = new Map();

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(startButton, start);
  });

  onFeed('job', (job) => show(job));
  // After a pause or a reconnect, events may have been missed: ask for the list.
  onFeed('open', catchUp);
  onFeed('reset', catchUp);
  startFeed();
  catchUp();

  async function start() {
    hideProblem(problemBox);
    const spec = Object.fromEntries(['queries', 'delay_ms', 'parallel', 'cpu_ms']
      .map((name) => [name, Number(form.elements[name].value)]));
    let answer;
    try {
      answer = await call('/api/jobs', { method: 'POST', body: spec });
    } catch (error) {
      showProblem(problemBox, networkProblem(error));
      return;
    }
    if (answer.status !== 202) {
      setText('jobs-status', `Not started: ${statusLine(answer)}.`);
      showProblem(problemBox, problemOf(answer));
      return;
    }
    setText('jobs-status', `Job ${answer.data.id} accepted (202) in ${formatMs(answer.end - answer.start)}; ` +
      'it goes on after that answer.');
    show(answer.data);
  }

  async function cancel(id) {
    hideProblem(problemBox);
    try {
      const answer = await call(`/api/jobs/${id}`, { method: 'DELETE' });
      if (answer.status === 202) show(answer.data);
      else if (answer.status === 409) setText('jobs-status', `Job ${id} had already finished.`);
      else showProblem(problemBox, problemOf(answer));
    } catch (error) {
      showProblem(problemBox, networkProblem(error));
    }
  }

  async function catchUp() {
    try {
      const answer = await call(`/api/jobs?limit=${SHOWN}`);
      if (answer.ok) for (const job of answer.data.jobs.reverse()) show(job);
    } catch {
      // The feed's own state line says when the server is gone.
    }
  }

  /** Draws `job`, unless a newer version of it was drawn already. */
  function show(job) {
    const known = jobs.get(job.id);
    if (known && FINAL.has(known.state)) return; // a late progress event must not undo the end
    if (known && !FINAL.has(job.state) && job.progress < known.progress) return;
    jobs.set(job.id, job);
    let row = list.querySelector(`[data-job="${job.id}"]`);
    if (!row) {
      row = rowFor(job.id);
      list.prepend(row);
      while (list.children.length > SHOWN) {
        const last = list.lastElementChild;
        jobs.delete(Number(last.dataset.job));
        last.remove();
      }
    }
    const bar = row.querySelector('progress');
    bar.value = job.progress;
    const percent = `${Math.round(job.progress * 100)} %`;
    bar.setAttribute('aria-valuetext', percent);
    row.querySelector('.job-percent').textContent = percent;
    row.querySelector('.job-state').textContent = job.state;
    row.dataset.state = job.state;
    const button = row.querySelector('button');
    button.disabled = FINAL.has(job.state);
    row.querySelector('.job-result').textContent = resultText(job);
  }

  function rowFor(id) {
    const bar = el('progress', { max: '1', value: '0', 'aria-label': `Progress of job ${id}` });
    const button = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    button.setAttribute('aria-label', `Cancel job ${id}`);
    button.addEventListener('click', () => cancel(id));
    return el('li', { class: 'job', 'data-job': String(id) },
      el('span', { class: 'job-id' }, `Job ${id}`),
      el('span', { class: 'job-state' }, ''),
      bar,
      el('span', { class: 'job-percent' }, ''),
      button,
      el('span', { class: 'job-result' }, ''));
  }
}

function resultText(job) {
  if (job.state === 'done' && job.result) {
    const r = job.result;
    return `${r.rows} rows from ${r.queries} queries (${r.parallel} at a time) in ${formatMs(r.query_elapsed_ms)}` +
      (r.cpu_ms ? `, then ${formatMs(r.cpu_elapsed_ms)} of CPU work offloaded (${r.primes.toLocaleString('en-US')} primes)` : '') +
      `: ${formatMs(r.elapsed_ms)} in all; one query after another would take ${formatMs(r.sequential_estimate_ms)}.`;
  }
  if (job.error) return job.error;
  if (job.state === 'queued') return 'Waiting for a free slot (--max-jobs).';
  return '';
}
