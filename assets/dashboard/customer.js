// dvault dashboard, one customer (/dashboard/customers/{id}): the 360 profile, its
// RFM cell, CLV and churn risk, its orders, and the attribute history as a timeline
// (which value each attribute held when, from the vault's SCD2 versions).
'use strict';

(() => {
  const { el, api, money, count, risk: riskWords, text, time, set, fill } = Dash;
  const prefix = '/dashboard/customers/';
  const id = decodeURIComponent(window.location.pathname.slice(prefix.length));
  const path = `/customers/${encodeURIComponent(id)}`;

  async function profile() {
    let c;
    try {
      c = await api(path);
    } catch (error) {
      if (error.status === 404) {
        set('name', `No customer ${id}`);
        document.title = `dvault · no customer ${id}`;
      }
      throw error;
    }
    const name = [c.first_name, c.last_name].filter(Boolean).join(' ') || c.customer_id;
    set('name', `${name} (${c.customer_id})`);
    document.title = `dvault · ${c.customer_id}`;
    const facts = [
      ['city', 'City', text(c.city)],
      ['country', 'Country', text(c.country)],
      ['signup-date', 'Signed up', text(c.signup_date)],
      // null where the API hides personal data (the server's role may not read it)
      ['email', 'E-mail', c.email == null ? 'hidden or none' : c.email],
      ['phone', 'Phone', c.phone == null ? 'hidden or none' : c.phone],
      ['orders-count', 'Orders (counted)', count(c.orders_count)],
      ['orders-cancelled', 'Cancelled or returned', count(c.orders_cancelled_or_returned)],
      ['avg-order-value', 'Average order', money(c.avg_order_value)],
      ['first-order', 'First order', time(c.first_order_at)],
      ['last-order', 'Last order', time(c.last_order_at)],
      ['favourite-category', 'Favourite category', text(c.favourite_category)],
      ['scores', 'Recency · frequency · monetary', c.recency_score == null ? '—'
        : `${c.recency_score} · ${c.frequency_score} · ${c.monetary_score}`],
    ];
    document.getElementById('profile').replaceChildren(...facts.flatMap(([key, label, value]) => [
      el('dt', {}, label), el('dd', { 'data-key': key }, value)]));
    set('segment', text(c.segment));
    set('rfm-cell', text(c.rfm_cell));
    set('clv-historic', money(c.clv_historic));
    set('clv-predicted', money(c.clv_predicted_12m));
    const risk = document.getElementById('churn-risk');
    risk.textContent = riskWords(c.churn_risk);
    risk.className = `value risk ${c.churn_risk || 'none'}`;
  }

  async function orders() {
    const page = await api(`${path}/orders?limit=100`);
    fill('orders', page.items.map((o) => el('tr', { 'data-order': o.order_id, class: o.is_counted ? '' : 'not-counted' },
      el('td', {}, o.order_id),
      el('td', {}, time(o.ordered_at)),
      el('td', {}, text(o.channel)),
      el('td', {}, o.status),
      el('td', { class: 'num' }, count(o.units)),
      el('td', { class: 'num' }, money(o.amount)),
      el('td', { class: 'num' }, money(o.cumulative_spent)))));
    if (page.items.length === 0) {
      fill('orders', [el('tr', {}, el('td', { colspan: '7', class: 'note' }, 'No orders.'))]);
    }
    if (page.next) {
      const more = document.getElementById('orders-more');
      more.textContent = `The ${page.items.length} most recent orders; the API has more (${page.next}).`;
      more.hidden = false;
    }
  }

  // One value an attribute held from `from` to `to` (null: still holds), merging
  // consecutive versions in which that attribute did not change.
  function spans(versions, attribute) {
    const out = [];
    for (const v of versions) {
      const value = v[attribute] ?? null;
      const last = out[out.length - 1];
      if (last && last.value === value && last.to === v.valid_from) {
        last.to = v.valid_to;
      } else {
        out.push({ attribute, value, from: v.valid_from, to: v.valid_to });
      }
    }
    return out;
  }

  async function history() {
    const h = await api(`${path}/history`);
    const rows = [
      ...['city', 'country', 'first_name', 'last_name'].flatMap((a) => spans(h.profile, a)),
      ...['email', 'phone'].flatMap((a) => spans(h.contact, a)),
    ];
    if (rows.length === 0) {
      fill('timeline', [el('tr', {}, el('td', { colspan: '5', class: 'note' }, 'No versions.'))]);
      return;
    }
    const start = Math.min(...rows.map((r) => Date.parse(r.from)));
    const now = Date.now();
    const end = Math.max(now, ...rows.map((r) => (r.to ? Date.parse(r.to) : now)));
    const scale = (t) => (100 * (t - start)) / Math.max(1, end - start);
    fill('timeline', rows.map((r) => {
      const bar = el('span', { class: `bar ${r.to ? 'past' : 'current'}` });
      const left = scale(Date.parse(r.from));
      bar.style.marginLeft = `${left}%`;
      bar.style.width = `${Math.max(0.5, scale(r.to ? Date.parse(r.to) : now) - left)}%`;
      return el('tr', { 'data-attribute': r.attribute, class: r.to ? 'past' : 'current' },
        el('td', {}, r.attribute.replace('_', ' ')),
        el('td', {}, r.value == null ? '—' : r.value),
        el('td', {}, time(r.from)),
        el('td', {}, r.to ? time(r.to) : 'now'),
        el('td', { class: 'bar-col' }, el('span', { class: 'track' }, bar)));
    }));
  }

  document.getElementById('search-id').value = id;
  Dash.start(() => Promise.all([profile(), orders(), history()]));
})();
