// Drives Debian's chromium (no browser download) through the dashboard of a running
// `dvault serve` and prints what it saw as one JSON document on stdout; the Rust test
// tests/integration/dashboard.rs compares it with the API's JSON and asserts.
//
//   node tests/dashboard/run.mjs BASE_URL CUSTOMER_ID SCREENSHOT_DIR [READ_KEY]
//
// SCREENSHOT_DIR `-` takes none. With AS_OF=YYYY-MM-DD in the environment the script
// also picks that date in the overview's as-of picker and reports what it shows then;
// with SEARCH=words it types them in the search box first and reports the list shown;
// with SEGMENT=name it opens that segment from the overview, pages, sorts and shows
// its six month ends.
// With READ_KEY the server is expected to require keys: the page must ask for one,
// which this script types into the page's form. CHROMIUM overrides /usr/bin/chromium.
import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const [base, customerId, shots, key] = process.argv.slice(2);
if (!base || !customerId || !shots) {
  console.error('usage: run.mjs BASE_URL CUSTOMER_ID SCREENSHOT_DIR [READ_KEY]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`no chromium at ${executablePath}: apt-get install chromium`);
  process.exit(3);
}
const origin = new URL(base).origin;
// How long a page may take to show what a step waits for. Generous: under the full
// test suite the two cores are shared with the server, PostgreSQL and other tests, and a
// 15 s wait once ran out (the page came, later). A wait that ends early costs nothing.
const WAIT = { timeout: 45000 };
const shoot = (page, name, options) =>
  shots === '-' ? null : page.screenshot({ path: join(shots, name), ...options });

const report = {
  console_errors: [],
  page_errors: [],
  requests: [],
  foreign_requests: [],
  failed_requests: [],
  error_responses: [],
};

// every text of the rows of a table body, one array per row
const rows = (page, selector) => page.$$eval(`${selector} tbody tr`, (trs) =>
  trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
const texts = (page, selector, attribute) => page.$$eval(selector, (nodes, attribute) =>
  Object.fromEntries(nodes.map((n) => [n.getAttribute(attribute), n.lastElementChild
    ? n.lastElementChild.textContent.trim() : n.textContent.trim()])), attribute);
const text = (page, selector) => page.$eval(selector, (n) => n.textContent.trim());

async function ready(page) {
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', WAIT);
  const state = await page.getAttribute('body', 'data-state');
  const error = await page.$eval('#error', (n) => (n.hidden ? null : n.textContent));
  return { state, error };
}

async function overview(page) {
  return {
    ...(await ready(page)),
    headline: {
      customers: await text(page, '#customers'),
      revenue: await text(page, '#revenue'),
      orders: await text(page, '#orders'),
      churn_rate: await text(page, '#churn-rate'),
    },
    revenue: await rows(page, '#revenue-table'),
    chart_canvases: await page.$$eval('#revenue-chart canvas', (c) => c.length),
    segments: await rows(page, '#segments'),
    churn: await texts(page, '#churn tr', 'data-key'),
    categories: await rows(page, '#categories'),
    products: await rows(page, '#products'),
    freshness: await texts(page, '#freshness tr', 'data-key'),
  };
}

async function segment(page) {
  const members = () => rows(page, '#members');
  const settled = (pageNumber) => page.waitForFunction((n) => {
    const t = document.getElementById('members');
    return t.dataset.state === 'ready' && t.dataset.page === n;
  }, pageNumber, WAIT);
  const out = {
    ...(await ready(page)),
    path: new URL(page.url()).pathname,
    name: await text(page, '#segment-name'),
    figures: {
      customers: await text(page, '#seg-customers'),
      customers_pct: await text(page, '#seg-customers-pct'),
      revenue: await text(page, '#seg-revenue'),
      revenue_pct: await text(page, '#seg-revenue-pct'),
      clv: await text(page, '#seg-clv'),
    },
    members: await members(),
  };
  if (await page.isVisible('#members-next')) {
    await page.click('#members-next');
    await settled('2');
    out.members_page_2 = await members();
  }
  await page.selectOption('#members-sort', '-total_spent');
  await settled('1');
  out.members_by_total_spent = await members();
  await page.click('#history-button');
  await page.waitForSelector('#history[data-state="ready"], #history[data-state="error"]', { timeout: 90000 });
  out.history_state = await page.getAttribute('#history', 'data-state');
  out.history = await rows(page, '#history-table');
  return out;
}

async function customer(page) {
  return {
    ...(await ready(page)),
    path: new URL(page.url()).pathname,
    name: await text(page, '#name'),
    facts: await texts(page, '#profile dd', 'data-key'),
    segment: await text(page, '#segment'),
    rfm_cell: await text(page, '#rfm-cell'),
    clv_historic: await text(page, '#clv-historic'),
    clv_predicted: await text(page, '#clv-predicted'),
    churn_risk: await text(page, '#churn-risk'),
    orders: await rows(page, '#orders'),
    timeline: await rows(page, '#timeline'),
  };
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.on('request', (request) => {
    const url = request.url();
    report.requests.push(`${request.method()} ${url}`);
    if (!url.startsWith('data:') && new URL(url).origin !== origin) report.foreign_requests.push(url);
  });
  context.on('response', (response) => {
    if (response.status() >= 400) report.error_responses.push(`${response.status()} ${response.url()}`);
  });
  context.on('requestfailed', (request) => {
    report.failed_requests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') report.console_errors.push(message.text());
  });
  page.on('pageerror', (error) => report.page_errors.push(String(error)));

  await page.goto(`${base}/dashboard`);
  if (key) {
    await page.waitForSelector('#key-form:not([hidden])', WAIT);
    report.key_form_shown = true;
    report.key_message = await text(page, '#key-message');
    await shoot(page, 'api-key.png');
    // a key the server refuses is forgotten and asked for again
    await page.fill('#key-input', 'not-a-key');
    await page.click('#key-form button');
    await page.waitForFunction(() => document.getElementById('key-message').textContent.includes('refused')
      && !document.getElementById('key-form').hidden, null, WAIT);
    report.key_message_after_wrong_key = await text(page, '#key-message');
    await page.fill('#key-input', key);
    await page.click('#key-form button');
  }
  report.overview = await overview(page);
  report.stored_key = await page.evaluate(() => sessionStorage.getItem('dvault.read_key'));
  if (!key) await shoot(page, 'overview.png', { fullPage: true });

  // the as-of picker: the same page at the end of a past day
  if (process.env.AS_OF) {
    await page.fill('#as-of', process.env.AS_OF);
    await Promise.all([page.waitForURL(/[?&]as_of=/, WAIT), page.click('#as-of-form button')]);
    report.overview_as_of = {
      ...(await overview(page)),
      query: new URL(page.url()).search,
      picked: await page.inputValue('#as-of'),
      note: await text(page, '#as-of-note'),
      back_to_today_shown: await page.$eval('#as-of-now', (n) => !n.hidden),
    };
    if (!key) await shoot(page, 'overview-as-of.png', { fullPage: true });
  }

  // the search box lists the customers several words match
  if (process.env.SEARCH) {
    await page.fill('#search-id', process.env.SEARCH);
    await page.click('#search button');
    await page.waitForSelector('#search-results:not([hidden])', WAIT);
    report.search = {
      message: await text(page, '#search-message'),
      customers: await page.$$eval('#search-results li', (lis) => lis.map((li) => li.dataset.customer)),
    };
  }

  // the search box leads to the customer's page
  await page.fill('#search-id', customerId);
  await Promise.all([page.waitForURL(/\/dashboard\/customers\//, WAIT), page.click('#search button')]);
  report.customer = await customer(page);
  report.key_form_hidden_on_customer = await page.$eval('#key-form', (n) => n.hidden);
  if (!key) await shoot(page, 'customer.png', { fullPage: true });

  // a segment, reached from the overview's segment table
  if (process.env.SEGMENT) {
    await page.goto(`${base}/dashboard`);
    await ready(page);
    await Promise.all([
      page.waitForURL(/\/dashboard\/segments\//, WAIT),
      page.click(`#segments a:text-is("${process.env.SEGMENT}")`),
    ]);
    report.segment = await segment(page);
    if (!key) await shoot(page, 'segment.png', { fullPage: true });
  }

  // an unknown id: the page says so, with the API's 404 (whose console line is kept
  // apart from the other pages' errors)
  const before = report.console_errors.length;
  await page.goto(`${base}/dashboard/customers/NO-SUCH-CUSTOMER`);
  const unknown = { ...(await ready(page)), name: await text(page, '#name') };
  // the page is ready at the first 404; the console lines of the others come later
  await page.waitForLoadState('networkidle', WAIT);
  report.unknown = { ...unknown, console_errors: report.console_errors.splice(before) };
  await context.close();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
