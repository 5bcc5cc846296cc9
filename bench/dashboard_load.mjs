// How long the dashboard's overview takes to show every panel, in Debian's chromium
// (issue 20: under 1 s at ten times the demo data): from navigation to the page's
// body[data-state=ready] (every API call answered and drawn), ROUNDS times each for
// today and, with AS_OF=YYYY-MM-DD, for that date (its first load computes the
// population at that date unless the server remembers it).
//
//   node bench/dashboard_load.mjs http://127.0.0.1:18191
//
// Uses tests/dashboard's playwright-core (cd tests/dashboard && npm ci).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/dashboard/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const base = process.argv[2];
if (!base) {
  console.error('usage: node bench/dashboard_load.mjs BASE_URL');
  process.exit(2);
}
const rounds = Number(process.env.ROUNDS || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const pages = [['today', '/dashboard']];
  if (process.env.AS_OF) pages.push([`as of ${process.env.AS_OF}`, `/dashboard?as_of=${process.env.AS_OF}`]);
  for (const [name, path] of pages) {
    const times = [];
    for (let i = 0; i < rounds; i += 1) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      const started = performance.now();
      await page.goto(`${base}${path}`);
      await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { timeout: 60000 });
      const elapsed = performance.now() - started;
      const state = await page.getAttribute('body', 'data-state');
      if (state !== 'ready') throw new Error(`${path}: ${await page.textContent('#error')}`);
      times.push(Math.round(elapsed));
      await context.close();
    }
    const sorted = [...times].sort((a, b) => a - b);
    console.log(`${name}: ${times.join(', ')} ms (median ${sorted[Math.floor(sorted.length / 2)]} ms)`);
  }
} finally {
  await browser.close();
}
