// The demo page in real headless Chromium, against the real server: every panel is
// clicked through and what it renders is checked against the answers it got.
//
// Run: cd tests/browser && node --test page.test.mjs   (see harness.mjs for the environment)
//
// Any uncaught exception, console error, failed request, request to another origin
// or HTTP error status a test did not ask for fails that test (afterEach).

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { join } from 'node:path';
import { PageWatcher, ServerStartError, artifactsDir, launchBrowser, startServer } from './harness.mjs';

let server;
let browser;
let page;
let watcher;
let artifacts;

before(async () => {
  artifacts = await artifactsDir();
  server = await startServer();
  browser = await launchBrowser();
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(20_000);
  watcher = new PageWatcher(page, server.url);
  await page.goto(`${server.url}/`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (artifacts) console.log(`screenshots in ${artifacts}`);
});

afterEach(() => {
  if (watcher) assert.deepEqual(watcher.check(), [], 'the page must run clean');
});

// ───── Helpers ─────

/** The trimmed text of the one element `selector` finds on `p`. */
async function text(selector, p = page) {
  return (await p.locator(selector).textContent()).trim();
}

/** The first number in a text: "1,204 ms" → 1204. */
function numberIn(value) {
  const match = /-?[\d,]+(\.\d+)?/.exec(value);
  assert.ok(match, `no number in "${value}"`);
  return Number(match[0].replaceAll(',', ''));
}

/** What the page prints for a duration (js/dom.js formatMs). */
function ms(value) {
  const digits = value < 10 ? 1 : 0;
  return `${new Intl.NumberFormat('en-US', { maximumFractionDigits: digits }).format(value)} ms`;
}

/**
 * Clicks (or otherwise acts) and returns the parsed JSON of the first answer whose
 * path starts with `path` (and, if given, to a request of that method).
 */
async function answerTo(path, act, p = page, method = null) {
  const answer = p.waitForResponse((r) => new URL(r.url()).pathname.startsWith(path) &&
    (method === null || r.request().method() === method));
  await act();
  const response = await answer;
  return { status: response.status(), body: await response.json() };
}

/** True when the server has no such route yet: then the test says so and skips. */
async function routeMissing(base, path) {
  const response = await fetch(`${base}${path}`);
  await response.arrayBuffer();
  return response.status === 404;
}

/** Reloads the page and waits until its first requests have answered, so none is cut short later. */
async function reload() {
  await page.reload();
  await page.locator('#items-caption', { hasText: /^Items 1 to/ }).waitFor();
  await page.locator('#server-line', { hasText: 'Served by' }).waitFor();
}

async function shoot(name, locator = page) {
  await locator.screenshot({ path: join(artifacts, `${name}.png`) });
}

async function apiItem(id) {
  const response = await fetch(`${server.url}/api/items/${id}`);
  return { status: response.status, body: response.status === 200 ? await response.json() : null };
}

// ───── The page ─────

test('the page loads, names its server and links every panel', async () => {
  assert.equal(await page.title(), 'coroute: what async buys');
  await page.locator('#server-line', { hasText: 'Served by' }).waitFor();
  assert.match(await text('#server-line'), /^Served by coroute\/\d+\.\d+\.\d+, healthy\.$/);

  const links = await page.locator('nav a').evaluateAll((as) => as.map((a) => [a.textContent, a.hash]));
  assert.deepEqual(links, [
    ['Database', '#database'], ['External API', '#external'], ['Combined', '#combined'],
    ['Concurrency lab', '#lab'], ['Blocking the loop', '#loop'], ['Jobs', '#jobs'], ['Items', '#items'],
  ]);
  for (const [, hash] of links) {
    assert.equal(await page.locator(`${hash} h2`).count(), 1, `panel ${hash} has a heading`);
  }
  await shoot('01-page-top');
});

test('Database: the slider sets the latency, and status, times and JSON are shown', async () => {
  // By keyboard: set the slider, nudge it with an arrow key, Tab to the button, Enter.
  await page.locator('#db-delay').fill('200');
  await page.locator('#db-delay').focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await text('#db-delay-value'), '250 ms');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Run the query');

  const { status, body } = await answerTo('/api/db', () => page.keyboard.press('Enter'));
  assert.equal(status, 200);
  await page.locator('#db-status', { hasText: 'Done' }).waitFor();

  assert.equal(body.delay_ms, 250);
  assert.ok(body.elapsed_ms >= 250, `the server waited ${body.elapsed_ms} ms for a 250 ms query`);
  assert.equal(await text('#db-http'), '200 OK');
  assert.equal(await text('#db-elapsed'), ms(body.elapsed_ms));
  assert.equal(await text('#db-rows'), String(body.items.length));
  assert.ok(numberIn(await text('#db-roundtrip')) >= Math.floor(body.elapsed_ms),
    'the round trip measured in the browser is at least the server time');
  assert.equal(await text('#db-status'), `Done: the server waited ${ms(body.elapsed_ms)} for the query.`);
  // The JSON, pretty-printed: two-space indents, and the same document.
  const shown = await text('#db-json');
  assert.deepEqual(JSON.parse(shown), body);
  assert.match(shown, /^ {2}"source": "database",$/m);
  assert.match(shown, /"name": "Widget"/);
  await shoot('02-database', page.locator('#database'));
});

test('External API: the upstream URL, status, time and data are shown', async (t) => {
  if (await routeMissing(server.url, '/api/external')) {
    t.skip('GET /api/external answers 404: the route is not on this server yet');
    return;
  }
  const { status, body } = await answerTo('/api/external', () => page.locator('#external-run').click());
  assert.equal(status, 200, `the demo upstream answered: ${JSON.stringify(body)}`);
  await page.locator('#external-status', { hasText: 'Done' }).waitFor();

  assert.equal(body.source, 'external');
  assert.equal(await text('#external-http'), '200 OK');
  assert.equal(await text('#external-url'), body.url);
  assert.equal(await text('#external-upstream-status'), String(body.status));
  assert.equal(await text('#external-elapsed'), ms(body.elapsed_ms));
  assert.deepEqual(JSON.parse(await text('#external-json')), body.data);
  assert.equal(await page.locator('#external-problem').isHidden(), true);
  await shoot('03-external', page.locator('#external'));
});

test('Combined: both calls drawn from 0 on one time axis, with their times', async (t) => {
  if (await routeMissing(server.url, '/api/combined')) {
    t.skip('GET /api/combined answers 404: the route is not on this server yet');
    return;
  }
  const { status, body } = await answerTo('/api/combined', () => page.locator('#combined-run').click());
  assert.equal(status, 200, `both sides answered: ${JSON.stringify(body)}`);
  await page.locator('#combined-status', { hasText: 'both calls answered' }).waitFor();

  const chart = page.locator('#combined-chart');
  assert.deepEqual(await chart.locator('text.label').allTextContents(), ['Database', 'External API', 'Whole request']);
  assert.deepEqual(await chart.locator('text.value').allTextContents(),
    [ms(body.database.elapsed_ms), ms(body.external.elapsed_ms), ms(body.elapsed_ms)]);
  // Both bars start at the same x: the calls overlap. Their widths follow their times.
  const bars = await chart.locator('rect.seg').evaluateAll((rects) => rects.map((r) => ({
    kind: r.getAttribute('class'), x: Number(r.getAttribute('x')), width: Number(r.getAttribute('width')),
  })));
  assert.deepEqual(bars.map((b) => b.kind), ['seg seg-db', 'seg seg-external', 'seg seg-total']);
  assert.equal(bars[0].x, bars[1].x);
  const longest = Math.max(body.database.elapsed_ms, body.external.elapsed_ms, body.elapsed_ms);
  const scale = Math.max(...bars.map((b) => b.width)) / longest;
  assert.ok(Math.abs(bars[0].width - Math.max(1, body.database.elapsed_ms * scale)) < 1.5, 'database bar to scale');
  assert.ok(Math.abs(bars[1].width - Math.max(1, body.external.elapsed_ms * scale)) < 1.5, 'external bar to scale');

  const summary = await text('#combined-summary');
  assert.ok(summary.includes(`The database took ${ms(body.database.elapsed_ms)}`), summary);
  assert.ok(summary.includes(`the external API took ${ms(body.external.elapsed_ms)}`), summary);
  assert.ok(summary.includes(`The whole request took ${ms(body.elapsed_ms)}`), summary);
  await shoot('04-combined', page.locator('#combined'));
});

test('Concurrency lab: five runs measured in the browser, drawn on one axis', { timeout: 120_000 }, async () => {
  const n = 12;
  const delay = 150;
  await page.locator('#lab-n').fill(String(n));
  await page.locator('#lab-delay').fill(String(delay));
  await page.locator('#lab-run').click();
  assert.equal(await page.locator('#lab-stop').isEnabled(), true, 'Stop is offered while the lab runs');
  await page.locator('#lab-status', { hasText: /^Done\./ }).waitFor({ timeout: 90_000 });
  assert.equal(await page.locator('#lab-stop').isDisabled(), true);

  const run = async (id) => {
    const summary = await text(`#${id}-summary`);
    return {
      summary,
      total: numberIn(await text(`#${id}-summary .run-total strong`)),
      bars: await page.locator(`#${id} svg g.bar`).count(),
      count: (kind) => page.locator(`#${id} svg rect.seg-${kind}`).count(),
      ticks: await page.locator(`#${id} svg text.tick`).allTextContents(),
    };
  };
  const atOnce = await run('run-at-once');
  const sequential = await run('run-sequential');
  const parallel = await run('run-parallel');
  const socket = await run('run-socket');
  const blocking = await run('run-blocking');
  const estimate = `N × latency = ${n} × ${delay} ms = ${(n * delay).toLocaleString('en-US')} ms.`;
  for (const r of [atOnce, sequential, parallel, socket, blocking]) assert.ok(r.summary.includes(estimate), r.summary);

  // 1. All at once: the browser keeps six on the wire, so twelve take two waves.
  assert.equal(atOnce.bars, n);
  assert.match(atOnce.summary, /At most 6 were on the wire at once; the others waited in the browser/);
  assert.ok(await atOnce.count('wait') >= n - 6, 'the second six wait for a connection (pale bars)');
  assert.ok(atOnce.total >= 2 * delay, `two waves of ${delay} ms, measured ${atOnce.total} ms`);
  assert.ok(atOnce.total < n * delay, `faster than one after another, measured ${atOnce.total} ms`);

  // 2. One after another: N × delay at least.
  assert.equal(sequential.bars, n);
  assert.match(sequential.summary, /One request was on the wire at a time\./);
  assert.ok(sequential.total >= n * delay, `measured ${sequential.total} ms`);

  // 3. Server fan-out: the request's bar, then one bar per query as the server timed it.
  assert.equal(parallel.bars, n + 1);
  assert.equal(await parallel.count('server'), n);
  assert.match(parallel.summary, new RegExp(`${n} queries ran on the server at once`));
  assert.ok(parallel.total >= delay && parallel.total < 2 * delay + 500, `measured ${parallel.total} ms`);

  // 4. One WebSocket: all N in flight at once on one connection, no bar waits.
  assert.equal(socket.bars, n);
  assert.equal(await socket.count('busy'), n);
  assert.equal(await socket.count('wait'), 0);
  assert.match(socket.summary, new RegExp(`All ${n} went out on one connection .*; at most ${n} were in flight on it at once\\.`));
  assert.ok(socket.total >= delay && socket.total < 2 * delay + 500, `measured ${socket.total} ms`);
  assert.ok(socket.total < atOnce.total, `one socket ${socket.total} < six connections ${atOnce.total}`);
  // Every bar starts near 0 and they all overlap: the latest start is before the earliest end.
  const spans = await page.locator('#run-socket svg rect.seg-busy').evaluateAll((rs) =>
    rs.map((r) => [Number(r.getAttribute('x')), Number(r.getAttribute('x')) + Number(r.getAttribute('width'))]));
  assert.ok(Math.max(...spans.map((s) => s[0])) < Math.min(...spans.map((s) => s[1])), JSON.stringify(spans));

  assert.ok(parallel.total < atOnce.total && atOnce.total < sequential.total,
    `fan-out ${parallel.total} < all at once ${atOnce.total} < one after another ${sequential.total}`);
  // One axis for all three, so the lengths compare.
  assert.deepEqual(atOnce.ticks, sequential.ticks);
  assert.deepEqual(parallel.ticks, sequential.ticks);
  assert.deepEqual(socket.ticks, sequential.ticks);
  assert.deepEqual(blocking.ticks, sequential.ticks);

  // The server's side: its thread counts as /api/stats gives them, and a peak per run.
  const stats = await (await fetch(`${server.url}/api/stats`)).json();
  assert.equal(await page.locator('#lab-server').getAttribute('data-threads'), String(stats.threads));
  assert.equal(await text('#lab-server .lab-threads'), `${stats.threads} event-loop thread${stats.threads === 1 ? '' : 's'}`);
  assert.equal(await page.locator('#lab-server').getAttribute('data-offload-threads'), String(stats.offload_threads));
  const peak = async (id) => numberIn(await text(`#${id}-summary .run-peak`));
  assert.ok(await peak('run-at-once') >= 2, 'requests sent together overlap on the server');
  assert.ok(await peak('run-at-once') <= 7, 'no more than the six connections (and the stats request)');

  // 5. A thread per request: the server finishes them in steps of its offload threads.
  const steps = Math.min(stats.offload_threads, 6); // six connections at most from the browser
  const rounds = Math.ceil(n / steps);
  assert.equal(blocking.bars, n);
  assert.match(blocking.summary, new RegExp(`ran them ${stats.offload_threads} at a time`));
  assert.ok(blocking.total >= rounds * delay * 0.95, `${rounds} rounds of ${delay} ms, measured ${blocking.total} ms`);
  const ends = (await page.locator('#run-blocking svg g.bar title').allTextContents())
    .map((t) => numberIn(/answered at ([\d,.]+) ms/.exec(t)[1])).sort((a, b) => a - b);
  let groups = 1;
  for (let i = 1; i < ends.length; i += 1) if (ends[i] - ends[i - 1] > delay / 2) groups += 1;
  assert.ok(groups >= rounds, `answers in ${groups} steps, expected ${rounds}: ${ends.join(', ')}`);

  assert.equal(await text('#lab-status'),
    `Done. All at once: ${ms(atOnce.total)}; one after another: ${ms(sequential.total)}; ` +
    `fan-out on the server: ${ms(parallel.total)}; over one WebSocket: ${ms(socket.total)}; ` +
    `a thread per request: ${ms(blocking.total)}. N × latency = ${ms(n * delay)}.`);
  await shoot('05-lab', page.locator('#lab'));
});

test('Concurrency lab: Stop ends a run at once', async () => {
  watcher.allowAborted('/api/db');
  await page.locator('#lab-n').fill('60');
  await page.locator('#lab-delay').fill('1000');
  await page.locator('#lab-run').click();
  // Let the first six answer, so the run is well under way.
  await page.waitForFunction(() => document.getElementById('lab-progress').value >= 6, null, { timeout: 10_000 });
  const stoppedAt = Date.now();
  await page.locator('#lab-stop').click();
  await page.locator('#lab-status', { hasText: 'Stopped.' }).waitFor({ timeout: 2_000 });
  assert.ok(Date.now() - stoppedAt < 2_000, 'the run stops without waiting for its requests');
  assert.equal(await text('#run-at-once-summary'), 'Stopped before it finished.');
  assert.equal(await text('#run-sequential-summary'), 'Not run.');
  assert.equal(await text('#run-parallel-summary'), 'Not run.');
  assert.equal(await text('#run-blocking-summary'), 'Not run.');
  assert.equal(await page.locator('#lab-stop').isDisabled(), true);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'lab-run', 'the focus goes back to Run');
  assert.equal(await page.locator('#lab-run').getAttribute('aria-disabled'), null, 'Run can be pressed again');
});

test('Blocking the loop: /healthz stalls while the loop counts primes, not while the pool does', { timeout: 60_000 }, async () => {
  await page.locator('#loop-run').click();
  await page.locator('#loop-status', { hasText: /^Done\./ }).waitFor({ timeout: 30_000 });
  const worst = async (id) => numberIn(/the longest ([\d,.]+ ms)/.exec(await text(`#${id}-summary`))[1]);
  const offloaded = await worst('loop-offload');
  const onLoop = await worst('loop-blocking');
  // Structural: on the loop a round trip waits for much of the 1 s of counting; offloaded none does.
  assert.ok(onLoop > 300, `on the loop the longest round trip took ${onLoop} ms`);
  assert.ok(offloaded < onLoop / 2, `offloaded ${offloaded} ms, on the loop ${onLoop} ms`);
  for (const id of ['loop-offload', 'loop-blocking']) {
    assert.ok(await page.locator(`#${id}-chart rect.seg-server`).count() >= 1, `${id}: the CPU calls are drawn`);
    assert.ok(await page.locator(`#${id}-chart rect.seg-busy`).count() >= 2, `${id}: the round trips are drawn`);
  }
  await shoot('06-loop', page.locator('#loop'));
});

test('Jobs: a bar per job moves to 100 % from live events, and Cancel stops one', { timeout: 60_000 }, async () => {
  const polls = [];
  const onRequest = (request) => {
    const path = new URL(request.url()).pathname;
    if (request.method() === 'GET' && /^\/api\/jobs\/\d+$/.test(path)) polls.push(path);
  };
  page.on('request', onRequest);
  try {
    await page.locator('#jobs-queries').fill('8');
    await page.locator('#jobs-delay').fill('100');
    await page.locator('#jobs-parallel').fill('1');
    await page.locator('#jobs-cpu').fill('200');
    const { status, body } = await answerTo('/api/jobs', () => page.locator('#jobs-start').click(), page, 'POST');
    assert.equal(status, 202);
    const row = page.locator(`#jobs-list [data-job="${body.id}"]`);
    await row.waitFor();
    // Record every value the bar takes, from the page's side.
    await page.evaluate((id) => {
      const bar = document.querySelector(`#jobs-list [data-job="${id}"] progress`);
      window.jobValues = [bar.value];
      const watch = () => { window.jobValues.push(bar.value); if (bar.value < 1) requestAnimationFrame(watch); };
      requestAnimationFrame(watch);
    }, body.id);
    await page.locator(`#jobs-list [data-job="${body.id}"][data-state="done"]`).waitFor({ timeout: 20_000 });
    assert.equal(await row.locator('progress').evaluate((b) => b.value), 1);
    assert.equal(await text('.job-percent', row), '100 %');
    const values = await page.evaluate(() => window.jobValues);
    assert.ok(values.some((v) => v > 0 && v < 1), `the bar moved in steps: ${values.slice(0, 20).join(', ')}`);
    assert.deepEqual(values, [...values].sort((a, b) => a - b), 'the bar never went back');
    assert.match(await text('.job-result', row), /^40 rows from 8 queries \(1 at a time\)/);
    assert.equal(await row.locator('button').isDisabled(), true, 'a finished job cannot be cancelled');

    // A long one, cancelled from its button.
    await page.locator('#jobs-queries').fill('100');
    await page.locator('#jobs-delay').fill('1000');
    const long = await answerTo('/api/jobs', () => page.locator('#jobs-start').click(), page, 'POST');
    const longRow = page.locator(`#jobs-list [data-job="${long.body.id}"]`);
    await longRow.locator('button').click();
    await page.locator(`#jobs-list [data-job="${long.body.id}"][data-state="cancelled"]`).waitFor({ timeout: 5_000 });
    assert.equal(await text('.job-result', longRow), 'cancelled by request');
    assert.deepEqual(polls, [], 'the panel never polls a job');
  } finally {
    page.off('request', onRequest);
  }
  await shoot('07-jobs', page.locator('#jobs'));
});

test('Combined: its own delay control sets the database side, so the two bars differ', async () => {
  await page.locator('#combined-delay').fill('600');
  const { status, body } = await answerTo('/api/combined', () => page.locator('#combined-run').click());
  assert.equal(status, 200);
  assert.ok(body.database.elapsed_ms >= 590, `database ${body.database.elapsed_ms} ms`);
  assert.ok(body.external.elapsed_ms < body.database.elapsed_ms, 'the upstream answers first');
  await page.locator('#combined-status', { hasText: 'both calls answered' }).waitFor();
  const widths = await page.locator('#combined-chart rect.seg').evaluateAll((rects) =>
    rects.map((r) => Number(r.getAttribute('width'))));
  assert.ok(widths[0] > widths[1] * 1.5, `the database bar is the longer: ${widths}`);
});

test('Items: list, add, a 422 shown by its field, edit in place, delete', { timeout: 60_000 }, async () => {
  const rows = page.locator('#items-body tr');
  await page.locator('#items-caption', { hasText: /^Items 1 to/ }).waitFor();
  const first = await fetch(`${server.url}/api/items?limit=10`).then((r) => r.json());
  assert.equal(await text('#items-caption'), `Items 1 to ${first.items.length} of ${first.total}`);
  assert.equal(await rows.count(), first.items.length);
  assert.deepEqual(await rows.nth(0).locator('td').allTextContents(),
    ['1', 'Widget', '9.99', first.items[0].updated_at.replace('T', ' ').replace('Z', ''), 'EditDelete']);
  assert.equal(await text('#items-body tr[data-id="4"] .item-price'), '120.00');

  // A 422: the server names the fields, and each message sits under its input.
  watcher.allow(422, '/api/items');
  await page.locator('#add-name').fill('   ');
  await page.locator('#add-price').fill('-3');
  const rejected = await answerTo('/api/items', () => page.locator('#item-add button').click());
  assert.equal(rejected.status, 422);
  assert.deepEqual(rejected.body.errors, [
    { field: 'name', message: 'must be 1 to 100 characters long' },
    { field: 'price', message: 'must be zero or more' },
  ]);
  await page.locator('#add-name-error', { hasText: 'must' }).waitFor();
  assert.equal(await text('#add-name-error'), 'Name must be 1 to 100 characters long');
  assert.equal(await text('#add-price-error'), 'Price must be zero or more');
  assert.equal(await page.locator('#add-name').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#add-price').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#add-name').getAttribute('aria-describedby'), 'add-name-error');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'add-name', 'focus goes to the first field to fix');
  assert.match(await text('#items-status'), /answered 422/);
  await shoot('06-items-422', page.locator('#items'));

  // A price that is not a number at all.
  await page.locator('#add-name').fill('Desk lamp');
  await page.locator('#add-price').fill('cheap');
  await answerTo('/api/items', () => page.locator('#add-price').press('Enter'));
  await page.locator('#add-price-error', { hasText: 'must be a number' }).waitFor();
  assert.equal(await text('#add-name-error'), '', 'the name is fine now: its message is gone');
  assert.equal(await page.locator('#add-name').getAttribute('aria-invalid'), null);

  // Fixed: added, the errors cleared, the new row on the list.
  await page.locator('#add-price').fill('12.5');
  const created = await answerTo('/api/items', () => page.locator('#item-add button').click());
  assert.equal(created.status, 201);
  const id = created.body.id;
  const row = page.locator(`#items-body tr[data-id="${id}"]`);
  await row.waitFor();
  assert.equal(await text('.item-name', row), 'Desk lamp');
  assert.equal(await text('.item-price', row), '12.50');
  assert.equal(await text('#add-price-error'), '');
  assert.equal(await page.locator('#add-price').getAttribute('aria-invalid'), null);
  assert.equal(await page.locator('#add-name').inputValue(), '', 'the form is emptied for the next item');
  assert.equal(await text('#items-status'), `Added item ${id}, “Desk lamp”.`);
  assert.equal(await text('#items-caption'), `Items 1 to ${first.total + 1} of ${first.total + 1}`);

  // Edit in place; Enter saves.
  await row.getByRole('button', { name: 'Edit Desk lamp' }).click();
  const priceInput = page.locator(`#edit-${id}-price`);
  assert.equal(await page.evaluate(() => document.activeElement.id), `edit-${id}-name`);
  assert.equal(await priceInput.inputValue(), '12.5');
  await priceInput.fill('15');
  const saved = await answerTo(`/api/items/${id}`, () => priceInput.press('Enter'));
  assert.equal(saved.status, 200);
  await page.locator(`#items-body tr[data-id="${id}"] .item-price`).waitFor();
  assert.equal(await text(`#items-body tr[data-id="${id}"] .item-price`), '15.00');
  assert.equal(await text('#items-status'), `Saved item ${id}: “Desk lamp” at 15.00.`);
  assert.equal((await apiItem(id)).body.price, 15, 'the server has the new price');

  // A 422 while editing is shown in the row, by the field; Escape gives up.
  await page.locator(`#items-body tr[data-id="${id}"]`).getByRole('button', { name: 'Edit Desk lamp' }).click();
  await page.locator(`#edit-${id}-name`).fill('');
  const badEdit = await answerTo(`/api/items/${id}`, () => page.locator(`#edit-${id}-name`).press('Enter'));
  assert.equal(badEdit.status, 422);
  await page.locator(`#edit-${id}-name-error`, { hasText: 'must' }).waitFor();
  assert.equal(await text(`#edit-${id}-name-error`), 'Name must be 1 to 100 characters long');
  assert.equal(await text(`#edit-${id}-price-error`), '');
  assert.equal(await page.locator(`#edit-${id}-name`).getAttribute('aria-invalid'), 'true');
  await page.keyboard.press('Escape');
  await page.locator(`#items-body tr[data-id="${id}"] .item-name`).waitFor();
  assert.equal(await text(`#items-body tr[data-id="${id}"] .item-name`), 'Desk lamp');
  assert.equal((await apiItem(id)).body.name, 'Desk lamp', 'the rejected edit changed nothing');

  // Delete: the row goes, the server forgets it, the count drops.
  await page.locator(`#items-body tr[data-id="${id}"]`).getByRole('button', { name: 'Delete Desk lamp' }).click();
  await page.locator(`#items-body tr[data-id="${id}"]`).waitFor({ state: 'detached' });
  assert.equal(await text('#items-status'), `Deleted item ${id}, “Desk lamp”.`);
  assert.equal(await text('#items-caption'), `Items 1 to ${first.total} of ${first.total}`);
  assert.equal((await apiItem(id)).status, 404);
  await shoot('07-items', page.locator('#items'));
});

test('Items: ten to a page, with Next and Previous', async () => {
  const before = await fetch(`${server.url}/api/items?limit=100`).then((r) => r.json());
  const extra = [];
  for (let i = extra.length + before.total; i < 11; i += 1) {
    const response = await fetch(`${server.url}/api/items`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: `Filler ${i + 1}`, price: i }),
    });
    assert.equal(response.status, 201);
    extra.push((await response.json()).id);
  }
  try {
    await reload();
    const total = before.total + extra.length;
    assert.equal(await text('#items-caption'), `Items 1 to 10 of ${total}`);
    assert.equal(await page.locator('#items-prev').isDisabled(), true);
    await page.locator('#items-next').click();
    await page.locator('#items-caption', { hasText: /^Items 11 to/ }).waitFor();
    assert.equal(await text('#items-caption'), `Items 11 to ${total} of ${total}`);
    assert.equal(await page.locator('#items-body tr').count(), total - 10);
    assert.equal(await page.locator('#items-next').isDisabled(), true);
    await page.locator('#items-prev').click();
    await page.locator('#items-caption', { hasText: /^Items 1 to/ }).waitFor();
    assert.equal(await page.locator('#items-body tr').count(), 10);
    assert.equal(await text('#items-body tr:first-child .item-name'), 'Widget');
  } finally {
    for (const id of extra) await fetch(`${server.url}/api/items/${id}`, { method: 'DELETE' });
    await reload();
  }
});

test('Items are live: a change in one tab shows in another without a reload', { timeout: 60_000 }, async () => {
  const soon = { timeout: 5_000 };
  const a = page;
  const b = await browser.context.newPage();
  b.setDefaultTimeout(20_000);
  const bWatcher = new PageWatcher(b, server.url);
  try {
    await b.goto(`${server.url}/`);
    await b.locator('#items-caption', { hasText: /^Items 1 to/ }).waitFor();
    for (const p of [a, b]) await p.locator('#items-live', { hasText: /^live$/ }).waitFor(soon);
    assert.equal(await b.locator('#items-live').getAttribute('aria-live'), 'polite');
    // A mark that a reload would wipe out.
    await b.evaluate(() => { window.sameDocument = true; });
    await a.bringToFront(); // changes are made in A; B, in the background, only watches

    const before = await fetch(`${server.url}/api/items?limit=10`).then((r) => r.json());
    assert.ok(before.total < 10, `a new item lands on the first page, with ${before.total} items before it`);
    const rowIn = (p, id) => p.locator(`#items-body tr[data-id="${id}"]`);

    // Added in A: the row appears in B, and the count goes up.
    await a.locator('#add-name').fill('Reading lamp');
    await a.locator('#add-price').fill('30');
    const created = await answerTo('/api/items', () => a.locator('#item-add button').click(), a, 'POST');
    assert.equal(created.status, 201);
    const { id } = created.body;
    await rowIn(b, id).waitFor(soon);
    assert.equal(await text('.item-name', rowIn(b, id)), 'Reading lamp');
    assert.equal(await text('.item-price', rowIn(b, id)), '30.00');
    const after = `Items 1 to ${before.total + 1} of ${before.total + 1}`;
    await b.locator('#items-caption', { hasText: after }).waitFor(soon);
    await a.locator('#items-caption', { hasText: after }).waitFor(soon);
    assert.equal(await rowIn(a, id).count(), 1, 'A shows its new item once, though it heard of it twice');
    assert.equal(await b.locator('#items-body tr').count(), before.total + 1);

    // Edited in A: B shows the new name and price.
    await rowIn(a, id).getByRole('button', { name: 'Edit Reading lamp' }).click();
    await a.locator(`#edit-${id}-name`).fill('Reading lamp, brass');
    await a.locator(`#edit-${id}-price`).fill('42');
    const saved = await answerTo(`/api/items/${id}`, () => a.locator(`#edit-${id}-price`).press('Enter'), a, 'PUT');
    assert.equal(saved.status, 200);
    await rowIn(b, id).locator('.item-name', { hasText: /^Reading lamp, brass$/ }).waitFor(soon);
    assert.equal(await text('.item-price', rowIn(b, id)), '42.00');
    assert.equal(await rowIn(b, id).locator('time').getAttribute('datetime'), saved.body.updated_at);
    assert.equal(await rowIn(a, id).count(), 1);
    await shoot('07-items-live', b.locator('#items'));

    // Deleted in A: gone from B, and the count is back.
    await rowIn(a, id).getByRole('button', { name: 'Delete Reading lamp, brass' }).click();
    await rowIn(b, id).waitFor({ ...soon, state: 'detached' });
    const back = `Items 1 to ${before.total} of ${before.total}`;
    await b.locator('#items-caption', { hasText: back }).waitFor(soon);
    await a.locator('#items-caption', { hasText: back }).waitFor(soon);
    assert.equal(await rowIn(a, id).count(), 0);
    assert.equal((await apiItem(id)).status, 404);

    assert.equal(await b.evaluate(() => window.sameDocument), true, 'B was never reloaded');
    assert.equal(await text('#items-live', b), 'live');
    assert.deepEqual(bWatcher.check(), [], 'the second tab must run clean');
  } finally {
    await b.close();
  }
});

test('a failing upstream is shown as a 502 problem: its title and detail', { timeout: 60_000 }, async (t) => {
  let bad;
  try {
    bad = await startServer(['--upstream', 'https://127.0.0.1:1/']);
  } catch (error) {
    if (error instanceof ServerStartError && error.exitCode === 2) {
      t.skip('coroute-server has no --upstream option yet (it exits 2 on an unknown option)');
      return;
    }
    throw error;
  }
  const tab = await browser.context.newPage();
  try {
    if (await routeMissing(bad.url, '/api/external')) {
      t.skip('GET /api/external answers 404: the route is not on this server yet');
      return;
    }
    const tabWatcher = new PageWatcher(tab, bad.url);
    tabWatcher.allow(502, '/api/external');
    tabWatcher.allow(502, '/api/combined');
    await tab.goto(`${bad.url}/`);

    const failed = await answerTo('/api/external', () => tab.locator('#external-run').click(), tab);
    assert.equal(failed.status, 502);
    assert.equal(failed.body.status, 502);
    assert.ok(failed.body.detail, 'the problem says why');
    await tab.locator('#external-problem .problem-title').waitFor();
    assert.equal(await text('#external-problem .problem-title', tab), `502 ${failed.body.title}`);
    assert.equal(await text('#external-problem .problem-detail', tab), failed.body.detail);
    assert.equal(await text('#external-http', tab), '502 Bad Gateway');
    assert.equal(await text('#external-status', tab), 'The upstream call failed.');
    await shoot('08-external-502', tab.locator('#external'));

    if (await routeMissing(bad.url, '/api/combined')) {
      t.diagnostic('GET /api/combined answers 404: its failing side is not checked yet');
    } else {
      const combined = await answerTo('/api/combined', () => tab.locator('#combined-run').click(), tab);
      assert.equal(combined.status, 502);
      const problem = combined.body.external.error;
      await tab.locator('#combined-problem .problem-title').waitFor();
      assert.equal(await text('#combined-problem .problem-title', tab),
        `External API: ${problem.status} ${problem.title}`);
      assert.equal(await text('#combined-problem .problem-detail', tab), problem.detail);
      assert.equal(await text('#combined-status', tab), '502 Bad Gateway: External API failed.');
      assert.deepEqual(await tab.locator('#combined-chart text.value').nth(1).textContent(),
        `failed: ${problem.title}`);
      assert.equal(await tab.locator('#combined-chart rect.seg-db').count(), 1, 'the database side still answered');
      const summary = await text('#combined-summary', tab);
      assert.ok(summary.startsWith(`The database took ${ms(combined.body.database.elapsed_ms)} and the external API failed`),
        summary);
      await shoot('09-combined-502', tab.locator('#combined'));
    }
    assert.deepEqual(tabWatcher.check(), [], 'the page must run clean');
  } finally {
    await tab.close();
    await bad.stop();
  }
});

test('accessible: labelled controls, named buttons, readable contrast, skip link', async () => {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((c) => c.labels.length === 0 && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
    .map((c) => c.id || c.outerHTML));
  assert.deepEqual(unlabelled, [], 'every control has a label');
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('button')]
    .filter((b) => !b.textContent.trim() && !b.getAttribute('aria-label')).map((b) => b.outerHTML));
  assert.deepEqual(unnamed, [], 'every button has a name');
  const charts = await page.evaluate(() => [...document.querySelectorAll('svg.timeline')]
    .map((svg) => document.getElementById(svg.getAttribute('aria-labelledby'))?.textContent.trim() ?? ''));
  assert.ok(charts.length === 8 && charts.every((c) => c.length > 0), 'every chart is described in words');

  // WCAG AA: 4.5:1 for the text of every visible element, in the light and the dark scheme.
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    assert.deepEqual(await page.evaluate(lowContrastText), [], `text contrast of at least 4.5:1 (${colorScheme})`);
  }
  await page.emulateMedia({ colorScheme: 'light' });

  // On a fresh page the first Tab lands on the skip link, and it shows.
  await reload();
  await page.keyboard.press('Tab');
  const skip = await page.evaluate(() => {
    const a = document.activeElement;
    const box = a.getBoundingClientRect();
    return { text: a.textContent, href: a.getAttribute('href'), visible: box.left >= 0 && box.width > 0 };
  });
  assert.deepEqual(skip, { text: 'Skip to the panels', href: '#main', visible: true });
});

test('readable at a phone width: nothing wider than the screen', async () => {
  await page.setViewportSize({ width: 375, height: 740 });
  try {
    await reload();
    const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, window: innerWidth }));
    assert.ok(widths.page <= widths.window, `the page is ${widths.page}px wide in a ${widths.window}px window`);
    const table = await page.locator('.table-wrap').evaluate((t) => ({ content: t.scrollWidth, box: t.clientWidth }));
    assert.ok(table.content <= table.box, `the items table needs ${table.content}px of ${table.box}px: no sideways scrolling`);
    const smallest = await page.evaluate(() => Math.min(...[...document.querySelectorAll('main p, main dd, main td, main label')]
      .filter((e) => e.getClientRects().length).map((e) => parseFloat(getComputedStyle(e).fontSize))));
    assert.ok(smallest >= 12, `smallest text ${smallest}px`);
    await page.screenshot({ path: join(artifacts, '10-phone.png'), fullPage: true });
  } finally {
    await page.setViewportSize({ width: 1100, height: 900 });
  }
});

/**
 * Runs in the page: every visible element with text of its own whose contrast
 * against the opaque background under it is below 4.5:1 (WCAG AA). Disabled
 * (faded) controls are exempt, as WCAG allows.
 */
function lowContrastText() {
  const rgb = (css) => {
    const m = /rgba?\(([^)]+)\)/.exec(css);
    if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return { r, g, b, a };
  };
  const luminance = ({ r, g, b }) => {
    const f = (v) => { const s = v / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c && c.a === 1) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const faded = (el) => {
    for (let e = el; e; e = e.parentElement) if (getComputedStyle(e).opacity !== '1') return true;
    return false;
  };

  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    const ownText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!ownText || !el.getClientRects().length || faded(el)) continue;
    if (el.closest('[hidden], .visually-hidden, .skip-link')) continue;
    const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${el.textContent.trim().slice(0, 30)}"`;
    const style = getComputedStyle(el);
    const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
    if (!fg) {
      low.push(`${name}: colour ${style.color} not understood`);
      continue;
    }
    const bg = background(el instanceof SVGElement ? el.closest('svg') : el);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    if (ratio < 4.5) low.push(`${name}: ${ratio.toFixed(2)}`);
  }
  return low;
}
