// What the browser tests share: the real server, Debian's Chromium, and a watch
// on the page that turns any console error, failed request or outside request
// into a test failure.
//
// Environment:
//   COROUTE_SERVER     the coroute-server binary   (default: build/release/src/coroute-server)
//   COROUTE_WWW        the www directory           (default: www/)
//   COROUTE_ARTIFACTS  where screenshots go        (default: a new temporary directory)
//   COROUTE_CHROMIUM   the browser                 (default: /usr/bin/chromium, Debian's)
//   COROUTE_TEST_PG    a PostgreSQL URL: every server runs on it (--db) instead of the simulated database

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const serverBinary = process.env.COROUTE_SERVER || join(repo, 'build/release/src/coroute-server');
export const wwwDir = process.env.COROUTE_WWW || join(repo, 'www');

/** The flags this machine's Chromium needs: headless, as root, no GPU, and quiet on the network. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // A safety net for "no outside requests": everything but loopback (which Chromium
  // never proxies) goes to a proxy on a closed port, so it fails instead of leaving.
  '--proxy-server=http://127.0.0.1:9',
];

/** A server that did not start; `exitCode` 2 means it refused its command line. */
export class ServerStartError extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * Starts coroute-server on a free port and waits for its first stdout line,
 * `coroute listening on http://HOST:PORT`: no fixed sleep.
 * @param {string[]} extraArgs more options, e.g. ['--upstream', 'https://127.0.0.1:1/']
 * @returns {Promise<{url: string, stop: () => Promise<void>, output: () => string}>}
 */
export function startServer(extraArgs = [], { timeoutMs = 15_000 } = {}) {
  const db = process.env.COROUTE_TEST_PG ? ['--db', process.env.COROUTE_TEST_PG] : [];
  const args = ['--host', '127.0.0.1', '--port', '0', '--www', wwwDir, '--access-log', 'off', ...db, ...extraArgs];
  const child = spawn(serverBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-20_000); };
  child.stderr.setEncoding('utf8').on('data', keep);
  // 'close' rather than 'exit': it comes after the output pipes are drained, so `output` is complete.
  const exited = new Promise((done) => child.once('close', (code, signal) => done({ code, signal })));

  return new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rejectStart(new ServerStartError(`coroute-server did not say it was listening within ${timeoutMs} ms\n${output}`));
    }, timeoutMs);

    const lines = createInterface({ input: child.stdout });
    let first = true;
    lines.on('line', (line) => {
      keep(`${line}\n`); // reading every line also keeps the pipe from filling up
      if (!first) return;
      first = false;
      const match = /^coroute listening on (https?:\/\/\S+)$/.exec(line);
      clearTimeout(timer);
      if (!match) {
        child.kill('SIGKILL');
        rejectStart(new ServerStartError(`unexpected first line from coroute-server: ${line}`));
        return;
      }
      resolveStart({
        url: match[1],
        output: () => output,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          const stopped = await Promise.race([exited, sleep(10_000).then(() => null)]);
          if (!stopped) {
            child.kill('SIGKILL');
            await exited;
          }
        },
      });
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      rejectStart(new ServerStartError(`cannot run ${serverBinary}: ${error.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rejectStart(new ServerStartError(
        `coroute-server exited (${signal ?? `code ${code}`}) before listening:\n${output}`, code));
    });
  });
}

/**
 * Starts Debian's Chromium, headless, with a fresh profile that is removed on close.
 * @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>}
 */
export async function launchBrowser({ viewport = { width: 1100, height: 900 } } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'coroute-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.COROUTE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs,
    viewport,
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The directory for screenshots, made if needed. */
export async function artifactsDir() {
  const dir = process.env.COROUTE_ARTIFACTS || (await mkdtemp(join(tmpdir(), 'coroute-artifacts-')));
  await mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Watches a page for everything that must not happen: an uncaught exception, a
 * console error, a request that failed, a request to any other origin, and an
 * HTTP error status that the test did not ask for.
 *
 * Chromium logs every 4xx/5xx answer as a console error ("Failed to load
 * resource: the server responded with a status of 422"). The page makes some on
 * purpose (a 422 to show, a 502 to show), so a test names those with allow();
 * they are forgiven only if the answer really came with that status.
 *
 * A request the page itself cut short (net::ERR_ABORTED, on this origin) is a
 * failure too, unless the test allowed it (allowAborted), or it is the page's
 * event feed (an EventSource, which the page closes on purpose and which stays
 * open until the page goes), or a navigation since it started cut it: the page
 * is live, so a change on the server can start a request just as a test reloads.
 */
export class PageWatcher {
  constructor(page, origin) {
    this.origin = new URL(origin).origin;
    this.allowed = [];
    this.navigations = 0;
    this.startedAt = new WeakMap(); // request → how many navigations there had been when it started
    this.reset();
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.navigations += 1;
    });
    page.on('pageerror', (error) => this.events.push(`uncaught exception: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') this.consoleErrors.push({ text: message.text(), url: message.location().url });
    });
    page.on('requestfailed', (request) => {
      this.failedRequests.push({
        method: request.method(), url: request.url(), error: request.failure()?.errorText,
        eventSource: request.resourceType() === 'eventsource', startedAt: this.startedAt.get(request) ?? this.navigations,
      });
    });
    page.on('request', (request) => {
      this.startedAt.set(request, this.navigations);
      const url = request.url();
      if (!url.startsWith('data:') && new URL(url).origin !== this.origin) this.events.push(`outside request: ${url}`);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) {
        this.errorResponses.push({ method: response.request().method(), url: response.url(), status: response.status() });
      }
    });
  }

  /** Lets answers with this status to a path starting with `pathPrefix` through, until the next check(). */
  allow(status, pathPrefix) {
    this.allowed.push({ status, pathPrefix });
  }

  /** Lets requests to a path starting with `pathPrefix` be cut short by the page (AbortController). */
  allowAborted(pathPrefix) {
    this.abortable.push(pathPrefix);
  }

  reset() {
    this.events = [];
    this.consoleErrors = [];
    this.errorResponses = [];
    this.failedRequests = [];
    this.allowed = [];
    this.abortable = [];
  }

  isAllowed(url, status) {
    const path = new URL(url).pathname;
    return this.allowed.some((a) => a.status === status && path.startsWith(a.pathPrefix));
  }

  /** Everything wrong since the last check, as sentences; then starts afresh. */
  check() {
    const problems = [...this.events];
    for (const r of this.failedRequests) {
      const aborted = r.error === 'net::ERR_ABORTED' && new URL(r.url).origin === this.origin &&
        (r.eventSource || r.startedAt < this.navigations ||
          this.abortable.some((prefix) => new URL(r.url).pathname.startsWith(prefix)));
      if (!aborted) problems.push(`request failed: ${r.method} ${r.url}: ${r.error}`);
    }
    for (const r of this.errorResponses) {
      if (!this.isAllowed(r.url, r.status)) problems.push(`unexpected ${r.status} for ${r.method} ${r.url}`);
    }
    for (const { text, url } of this.consoleErrors) {
      const status = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      const forgiven = status && url && this.isAllowed(url, Number(status[1])) &&
        this.errorResponses.some((r) => r.url === url && r.status === Number(status[1]));
      if (!forgiven) problems.push(`console error: ${text}${url ? ` (${url})` : ''}`);
    }
    this.reset();
    return problems;
  }
}

export function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}
