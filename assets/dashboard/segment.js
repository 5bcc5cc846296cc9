// dvault dashboard, one RFM segment (/dashboard/segments/{name}): its figures today,
// its customers (paged and sortable, as GET /segments/{name}/customers pages them),
// and on request its customers and revenue at the last six month ends (the API's
// as_of: the first look at a month end computes the whole population then).
'use strict';

(() => {
  const { el, api, money, count, percent, shareCell, risk, text, time, set, fill } = Dash;
  const prefix = '/dashboard/segments/';
  const asked = decodeURIComponent(window.location.pathname.slice(prefix.length));
  let segment = asked; // the API's spelling, once known
  let pages = [];      // the links of the pages seen, for "First page"

  async function summary() {
    const { items } = await api('/segments');
    const s = items.find((x) => x.segment.toLowerCase() === asked.trim().toLowerCase());
    if (!s) {
      set('segment-name', `No segment ${asked}`);
      throw new Error(`No segment ${asked}; the segments are ${items.map((x) => x.segment).join(', ')}.`);
    }
    segment = s.segment;
    document.title = `dvault · ${segment}`;
    set('segment-name', segment);
    set('segment-description', text(s.description));
    set('seg-customers', count(s.customers));
    set('seg-customers-pct', percent(s.customers_pct));
    set('seg-revenue', money(s.revenue));
    set('seg-revenue-pct', percent(s.revenue_pct));
    set('seg-clv', money(s.clv_predicted_12m));
  }

  function membersPath() {
    const sort = document.getElementById('members-sort').value;
    return `/segments/${encodeURIComponent(segment)}/customers?sort=${encodeURIComponent(sort)}&limit=25`;
  }

  async function showMembers(path) {
    const page = await api(path);
    fill('members', page.items.map((c) => el('tr', { 'data-customer': c.customer_id },
      el('td', {}, el('a', { href: `/dashboard/customers/${encodeURIComponent(c.customer_id)}` }, c.customer_id)),
      el('td', {}, [c.first_name, c.last_name].filter(Boolean).join(' ') || '—'),
      el('td', {}, text(c.city)),
      el('td', { class: 'num' }, count(c.orders_count)),
      el('td', { class: 'num' }, money(c.total_spent)),
      el('td', {}, time(c.last_order_at)),
      el('td', { class: 'num' }, money(c.clv_predicted_12m)),
      el('td', {}, risk(c.churn_risk)))));
    pages.push(path);
    set('members-page', `Page ${pages.length}`);
    const next = document.getElementById('members-next');
    next.hidden = !page.next;
    next.dataset.next = page.next || '';
    document.getElementById('members-first').hidden = pages.length === 1;
    document.getElementById('members').dataset.page = String(pages.length);
  }

  function browse(path) {
    const table = document.getElementById('members');
    table.dataset.state = 'loading';
    showMembers(path).then(
      () => { table.dataset.state = 'ready'; },
      (error) => { Dash.showError(error.message); table.dataset.state = 'error'; },
    );
  }

  // The last day of each of the six months before this one (UTC).
  function monthEnds() {
    const today = new Date();
    const ends = [];
    for (let k = 6; k >= 1; k -= 1) {
      const end = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - k + 1, 0));
      ends.push(end.toISOString().slice(0, 10));
    }
    return ends;
  }

  async function history() {
    const rows = [];
    for (const day of monthEnds()) {
      // one after the other: each may compute a whole population the first time
      const { items } = await api(`/segments?as_of=${day}`);
      const s = items.find((x) => x.segment === segment);
      rows.push(el('tr', { 'data-day': day },
        el('td', {}, day),
        el('td', { class: 'num' }, count(s ? s.customers : null)),
        el('td', { class: 'num' }, percent(s ? s.customers_pct : null)),
        el('td', { class: 'num' }, money(s ? s.revenue : null)),
        shareCell(s ? s.revenue_pct : null)));
      fill('history-table', rows);
      document.getElementById('history-table').hidden = false;
    }
  }

  function wire() {
    document.getElementById('members-sort').addEventListener('change', () => {
      pages = [];
      browse(membersPath());
    });
    document.getElementById('members-next').addEventListener('click', (event) => {
      browse(event.target.dataset.next);
    });
    document.getElementById('members-first').addEventListener('click', () => {
      pages = [];
      browse(membersPath());
    });
    const button = document.getElementById('history-button');
    button.addEventListener('click', () => {
      button.disabled = true;
      const panel = document.getElementById('history');
      panel.dataset.state = 'loading';
      history().then(
        () => { panel.dataset.state = 'ready'; },
        (error) => { Dash.showError(error.message); panel.dataset.state = 'error'; button.disabled = false; },
      );
    });
  }

  wire();
  Dash.start(async () => {
    await summary();
    await showMembers(membersPath());
    document.getElementById('members').dataset.state = 'ready';
  });
})();
