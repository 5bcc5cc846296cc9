// dvault dashboard, the overview (/dashboard): headline numbers, revenue per month,
// RFM segments, churn split, top categories and products and data freshness, each
// from one API call.
// With `?as_of=YYYY-MM-DD` (the date picker) every figure is that of the end of that
// day (the API's as_of): customers, segments and churn of then, revenue, categories
// and products of the orders placed by then, counted by their status then. Data
// freshness is always today's.
'use strict';

(() => {
  const { el, api, cents, moneyOfCents, money, count, pct, shareCell, text, set, fill } = Dash;

  // the picked date, if the address has a well-formed one
  const asOf = (() => {
    const value = new URLSearchParams(window.location.search).get('as_of');
    return value && /^\d{4}-\d{2}-\d{2}$/.test(value) ? value : null;
  })();
  const asOfQuery = asOf ? `as_of=${asOf}` : '';

  function picker() {
    if (!asOf) return;
    document.getElementById('as-of').value = asOf;
    document.getElementById('as-of-now').hidden = false;
    set('as-of-note', `Every figure as it was at the end of ${asOf} (UTC): orders placed by then, `
      + 'counted by their status then; data freshness: today.');
    set('revenue-title', `Revenue per month, as of ${asOf}`);
    set('products-title', `Top products by revenue, as of ${asOf}`);
    set('categories-title', `Top categories by revenue, as of ${asOf}`);
  }

  // `path` with the picked date as `as_of`, if there is one
  function then(path) {
    if (!asOf) return path;
    return `${path}${path.includes('?') ? '&' : '?'}${asOfQuery}`;
  }

  // Month points { month, orders, cents } (whole cents).
  async function months() {
    const { series } = await api(then('/analytics/revenue?period=month'));
    return series.map((p) => ({ month: p.period_start.slice(0, 7), orders: p.orders, cents: cents(p.revenue) }));
  }

  async function revenue() {
    const series = await months();
    let revenueCents = 0;
    let orders = 0;
    for (const point of series) {
      revenueCents += point.cents;
      orders += point.orders;
    }
    set('revenue', moneyOfCents(revenueCents));
    set('orders', count(orders));
    fill('revenue-table', series.map((p) => el('tr', {},
      el('td', {}, p.month),
      el('td', { class: 'num' }, count(p.orders)),
      el('td', { class: 'num' }, moneyOfCents(p.cents)))));
    chart(series);
  }

  function chart(series) {
    const box = document.getElementById('revenue-chart');
    if (series.length === 0) {
      box.replaceChildren(el('p', { class: 'note' }, 'No orders yet.'));
      return;
    }
    // one bar per month on an ordinal axis, labelled with the month
    const labels = series.map((p) => p.month);
    const xs = series.map((p, i) => i);
    const ys = series.map((p) => p.cents / 100);
    const width = () => Math.max(320, box.clientWidth);
    const plot = new uPlot({
      width: width(),
      height: 260,
      legend: { show: false },
      cursor: { show: false },
      scales: {
        x: { time: false, range: () => [-0.5, series.length - 0.5] },
        y: { range: (u, min, max) => [0, max * 1.1 || 1] },
      },
      axes: [
        {
          incrs: [1, 2, 3, 4, 6, 12, 24, 60, 120],
          space: 60,
          values: (u, splits) => splits.map((i) => (Number.isInteger(i) && labels[i]) || ''),
        },
        { size: 70, values: (u, ticks) => ticks.map((t) => group0(t)) },
      ],
      series: [
        {},
        {
          label: 'Revenue',
          stroke: '#2b6cb0',
          fill: 'rgba(43, 108, 176, 0.35)',
          width: 1,
          paths: uPlot.paths.bars({ size: [0.7, 60] }),
          points: { show: false },
        },
      ],
    }, [xs, ys], box);
    window.addEventListener('resize', () => plot.setSize({ width: width(), height: 260 }));
  }

  function group0(value) {
    return Math.round(value).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  async function segments() {
    const { items } = await api(then('/segments'));
    fill('segments', items.map((s) => el('tr', { 'data-segment': s.segment, title: s.description || '' },
      el('td', {}, el('a', { href: `/dashboard/segments/${encodeURIComponent(s.segment)}` }, s.segment)),
      el('td', { class: 'num' }, count(s.customers)),
      shareCell(s.customers_pct),
      el('td', { class: 'num' }, money(s.revenue)),
      el('td', { class: 'num' }, money(s.clv_predicted_12m)))));
  }

  async function churn() {
    const c = await api(then('/analytics/churn'));
    set('customers', count(c.customers));
    set('churn-rate', pct(c.churn_rate));
    const parts = [
      ['active', 'Active', c.active],
      ['at-risk', 'At risk', c.at_risk],
      ['churned', 'Churned', c.churned],
      ['prospect', 'Prospects (no order)', c.prospects],
    ];
    const total = parts.reduce((sum, [, , n]) => sum + n, 0) || 1;
    document.getElementById('churn-bar').replaceChildren(...parts.map(([cls, label, n]) => {
      const part = el('span', { class: `part ${cls}`, title: `${label}: ${n}` });
      part.style.width = `${(100 * n) / total}%`;
      return part;
    }));
    fill('churn', [
      ...parts.map(([cls, label, n]) => el('tr', { 'data-key': cls },
        el('th', {}, el('span', { class: `swatch ${cls}` }), label),
        el('td', { class: 'num' }, count(n)))),
      el('tr', { 'data-key': 'at-risk-rate' }, el('th', {}, 'At-risk rate'), el('td', { class: 'num' }, pct(c.at_risk_rate))),
    ]);
  }

  async function categories() {
    const { items } = await api(then('/analytics/categories'));
    fill('categories', items.slice(0, 10).map((c) => el('tr', { 'data-category': c.category == null ? '' : c.category },
      el('td', {}, c.category == null ? '(no category)' : c.category),
      el('td', { class: 'num' }, count(c.products)),
      el('td', { class: 'num' }, count(c.units_sold)),
      el('td', { class: 'num' }, money(c.revenue)),
      shareCell(c.revenue_pct))));
  }

  async function products() {
    const { items } = await api(then('/analytics/top-products?limit=10'));
    fill('products', items.map((p) => el('tr', { 'data-product': p.product_id },
      el('td', {}, p.product_id),
      el('td', {}, text(p.name)),
      el('td', {}, text(p.category)),
      el('td', { class: 'num' }, count(p.units_sold)),
      el('td', { class: 'num' }, money(p.revenue)))));
  }

  async function freshness() {
    const row = (key, label, value) => el('tr', { 'data-key': key }, el('th', {}, label), el('td', {}, value));
    let ready;
    try {
      ready = await api('/ready');
    } catch (error) {
      // 503: not ready (schema, replica lag, database): the problem's detail says why
      fill('freshness', [row('status', 'Status', `not ready: ${error.message}`)]);
      return;
    }
    const lag = ready.loader.oldest_pending_seconds;
    const rows = [
      row('status', 'Status', ready.status),
      row('pending-events', 'Events waiting for the loader', count(ready.loader.pending_events)),
      row('oldest-pending', 'Oldest waiting', lag == null ? 'none' : `${Math.round(lag)} s`),
      row('schema-version', 'Schema version', String(ready.schema_version)),
    ];
    if (ready.quality) {
      rows.push(row('quality', 'Last quality check',
        `${ready.quality.passed ? 'passed' : 'FAILED'} (${Dash.time(ready.quality.checked_at)}): ${ready.quality.verdict}`));
    } else {
      rows.push(row('quality', 'Last quality check', 'none recorded'));
    }
    const run = ready.last_run;
    rows.push(row('last-run', 'Last load run', run
      ? `${run.status} (${run.kind}, ${run.trigger}), started ${Dash.time(run.started_at)}`
        + `${run.finished_at ? `, finished ${Dash.time(run.finished_at)}` : ''}`
        + `${run.events_read == null ? '' : `, ${count(run.events_read)} events`}`
      : 'none recorded'));
    if (ready.replica) {
      rows.push(row('replica', 'Read replica lag', `${ready.replica.replay_lag_seconds ?? '—'} s`));
    }
    fill('freshness', rows);
  }

  picker();
  Dash.start(() => Promise.all([revenue(), segments(), churn(), categories(), products(), freshness()]));
})();
