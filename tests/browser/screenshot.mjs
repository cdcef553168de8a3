// Takes the README's picture of the page: the Concurrency lab after it ran all three
// ways, at a laptop-ish width.
//
//   cd tests/browser && COROUTE_SCREENSHOT_OUT=../../docs/screenshot.png node screenshot.mjs
//
// Uses the same server, browser and environment as the tests (see harness.mjs), and
// fails if the page logs an error or makes a request it should not.

import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PageWatcher, launchBrowser, startServer } from './harness.mjs';

const out = process.env.COROUTE_SCREENSHOT_OUT;
if (!out) {
  console.log('screenshot.mjs: set COROUTE_SCREENSHOT_OUT to the PNG to write, e.g. ../../docs/screenshot.png');
  process.exit(0);
}

const server = await startServer();
const browser = await launchBrowser({ viewport: { width: 760, height: 900 } });
try {
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  const watcher = new PageWatcher(page, server.url);
  await page.goto(`${server.url}/`);

  // The page's own defaults: 24 requests of 200 ms each.
  await page.locator('#lab-run').click();
  await page.locator('#lab-status', { hasText: /^Done\./ }).waitFor({ timeout: 60_000 });

  // From the lab's controls to its last chart: the settings, the totals and the waterfalls.
  // In page coordinates (a full-page clip), whatever the scroll position.
  const clip = await page.evaluate(() => {
    const top = document.getElementById('lab-form').getBoundingClientRect().top - 16;
    const panel = document.getElementById('lab').getBoundingClientRect();
    return { x: panel.left, y: top + scrollY, width: panel.width, height: panel.bottom - top };
  });
  await mkdir(dirname(resolve(out)), { recursive: true });
  await page.screenshot({ path: out, clip, fullPage: true });

  const problems = watcher.check();
  if (problems.length) throw new Error(`the page did not run clean:\n${problems.join('\n')}`);
  console.log(`screenshot.mjs: wrote ${out} (${Math.round(clip.width)}×${Math.round(clip.height)})`);
} finally {
  await browser.close();
  await server.stop();
}
