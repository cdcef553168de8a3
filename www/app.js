// The page's entry point. Each panel is a small module that wires its own part of
// index.html; read them in the order they appear on the page:
//
//   js/database.js   GET /api/db
//   js/external.js   GET /api/external
//   js/combined.js   GET /api/combined, drawn with js/timeline.js
//   js/lab.js        many /api/db at once, one after another, /api/db/parallel, and
//   js/socket.js     the same queries over one WebSocket, /ws, then /api/blocking
//   js/loop.js       /api/cpu offloaded or on the loop, against /healthz round trips
//   js/jobs.js       /api/jobs: background jobs, their progress live from the feed
//   js/items.js      the /api/items view: list, add, edit, delete, kept live by
//   js/live.js       the event feed, /api/events (Server-Sent Events)
//
// js/http.js has the one function that talks to the server; js/dom.js the helpers
// that fill the page.

import { call } from './js/http.js';
import { setupDatabase } from './js/database.js';
import { setupExternal } from './js/external.js';
import { setupCombined } from './js/combined.js';
import { setupLab } from './js/lab.js';
import { setupItems } from './js/items.js';
import { setupLoop } from './js/loop.js';
import { setupJobs } from './js/jobs.js';

setupDatabase();
setupExternal();
setupCombined();
setupLab();
setupLoop();
setupJobs();
setupItems();
showServer();

/** The header's last line: which server answered, from /healthz and its Server header. */
async function showServer() {
  const line = document.getElementById('server-line');
  try {
    const answer = await call('/healthz');
    const server = answer.headers.get('Server') ?? 'the server';
    line.textContent = answer.ok
      ? `Served by ${server}, healthy.`
      : `${server} answered /healthz with ${answer.status}.`;
  } catch {
    line.textContent = 'The server does not answer: start it with scripts/run.sh.';
  }
}
