// The live event feed: GET /api/events, Server-Sent Events, read with EventSource.
//
//   event: item     id: N   data: {"op":"created"|"updated"|"deleted","item":{…}}
//   event: job      id: N   data: the job, as GET /api/jobs/{id} answers it
//   event: reset            data: {"last_event_id":N,"oldest_id":M}: events were missed
//   : connected, : ping     comments (heartbeats): EventSource never shows them
//
// EventSource reconnects by itself after a dropped connection and sends the last
// id it saw (Last-Event-ID), so the server can send what was missed, or `reset`
// when it no longer has it. It gives up only when the server answers with an error
// or something that is not an event stream; then this module tries again later.
//
// The feed holds one of the six connections the browser opens to a server for as
// long as it is open. The Concurrency lab measures exactly those six, so it asks
// the feed to step aside while it runs: pauseFeed().

const PATH = '/api/events';
const RETRY_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/** The feed's state: 'connecting', 'live', 'reconnecting' or 'paused'. */
let state = 'connecting';
let source = null;
let retryTimer = null;
let retries = 0;
let pauses = 0;
const listeners = { state: [], open: [], item: [], job: [], reset: [] };

/**
 * Calls `listener` on a feed happening:
 *   'state'  (state)          the feed went live, is reconnecting, was paused
 *   'open'   ()               the feed is (again) connected: what happened while it was not may be missed
 *   'item'   ({op, item, id}) an item was created, updated or deleted; `id` is the event's sequence number
 *   'job'    (job)            a background job started, made progress or ended
 *   'reset'  (data)           events were missed: whatever was drawn from them is out of date
 */
export function onFeed(name, listener) {
  listeners[name].push(listener);
  if (name === 'state') listener(state);
}

/** Opens the feed, unless it is open or paused. */
export function startFeed() {
  if (!source && !retryTimer && pauses === 0) connect();
}

/**
 * Closes the feed until the function returned is called (once). Pauses nest: the
 * feed opens again when the last one ends, and then says 'open' so its readers catch up.
 */
export function pauseFeed() {
  pauses += 1;
  if (pauses === 1) {
    disconnect();
    setState('paused');
  }
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    pauses -= 1;
    if (pauses === 0) {
      retries = 0;
      setState('connecting');
      connect();
    }
  };
}

function connect() {
  const feed = new EventSource(PATH);
  source = feed;
  feed.addEventListener('open', () => {
    retries = 0;
    setState('live');
    emit('open');
  });
  feed.addEventListener('error', () => {
    if (feed !== source) return;
    if (feed.readyState === EventSource.CLOSED) {
      // The browser gave up on this one (an error status, not an event stream): try again later.
      source = null;
      const wait = RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
      retries += 1;
      retryTimer = setTimeout(() => { retryTimer = null; connect(); }, wait);
    }
    setState('reconnecting');
  });
  feed.addEventListener('item', (event) => {
    const data = parse(event.data);
    if (data && typeof data.op === 'string' && data.item && data.item.id !== undefined) {
      emit('item', { op: data.op, item: data.item, id: event.lastEventId });
    } else {
      emit('reset', data); // an event this page cannot read: start afresh rather than guess
    }
  });
  feed.addEventListener('job', (event) => {
    const job = parse(event.data);
    if (job && job.id !== undefined) emit('job', job);
  });
  feed.addEventListener('reset', (event) => emit('reset', parse(event.data)));
}

function disconnect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  source?.close();
  source = null;
}

function setState(next) {
  if (next === state) return;
  state = next;
  emit('state', state);
}

function emit(name, value) {
  for (const listener of listeners[name]) listener(value);
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
