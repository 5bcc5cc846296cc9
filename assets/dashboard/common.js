// dvault dashboard: what every page shares. Calls the JSON API of this origin (the
// pages have no data of their own), asks for a read key when the API answers 401
// and keeps it in sessionStorage, formats the API's values without changing them.
'use strict';

const Dash = (() => {
  const KEY = 'dvault.read_key';
  let asking = null; // one key form for every request that got a 401 at once

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function askKey(message) {
    if (asking) return asking;
    const form = document.getElementById('key-form');
    const input = document.getElementById('key-input');
    document.getElementById('key-message').textContent = message;
    form.hidden = false;
    input.focus();
    asking = new Promise((resolve) => {
      form.addEventListener('submit', function done(event) {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY, key);
        input.value = '';
        form.hidden = true;
        form.removeEventListener('submit', done);
        asking = null;
        resolve();
      });
    });
    return asking;
  }

  // GET a path of the API as JSON; a problem document becomes an Error carrying it.
  async function api(path) {
    const headers = { Accept: 'application/json' };
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = 'Bearer ' + key;
    const response = await fetch(path, { headers, credentials: 'omit' });
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      await askKey(key
        ? 'The server refused that key.'
        : 'This server requires an API key.');
      return api(path);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((body && body.detail) || `${path}: HTTP ${response.status}`);
      error.status = response.status;
      error.problem = body;
      throw error;
    }
    return body;
  }

  // Money is a decimal string with two decimals ("1234.50"): added as whole cents,
  // never as floats.
  function cents(money) {
    const match = /^(-?)(\d+)\.(\d{2})$/.exec(money);
    if (!match) throw new Error(`not money: ${money}`);
    const value = Number(match[2]) * 100 + Number(match[3]);
    return match[1] ? -value : value;
  }

  function group(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function moneyOfCents(total) {
    const sign = total < 0 ? '-' : '';
    const abs = Math.abs(total);
    return `${sign}${group(String(Math.floor(abs / 100)))}.${String(abs % 100).padStart(2, '0')}`;
  }

  // "1234.50" -> "1,234.50"; null -> "—"
  function money(value) {
    return value == null ? '—' : moneyOfCents(cents(value));
  }

  function count(value) {
    return value == null ? '—' : group(String(value));
  }

  function pct(rate) {
    return rate == null ? '—' : `${(rate * 100).toFixed(2)}%`;
  }

  // a percentage the API gives (12.34) -> "12.34%"; null -> "—"
  function percent(value) {
    return value == null ? '—' : `${value.toFixed(2)}%`;
  }

  // a table cell with a bar as wide as the percentage, and the percentage
  function shareCell(value) {
    const bar = el('span', { class: 'bar' });
    bar.style.width = `${Math.min(100, value || 0)}%`;
    return el('td', { class: 'bar-col' }, el('span', { class: 'track' }, bar), ` ${percent(value)}`);
  }

  // the API's churn risk (at_risk) in words (at risk); null -> "—"
  const RISKS = { active: 'active', at_risk: 'at risk', churned: 'churned' };
  function risk(value) {
    return value == null ? '—' : RISKS[value] || value;
  }

  function text(value) {
    return value == null || value === '' ? '—' : String(value);
  }

  // "2024-07-01T10:00:00Z" -> "2024-07-01 10:00" (UTC, as the API says it)
  function time(value) {
    return value == null ? '—' : value.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, '');
  }

  function set(id, value) {
    document.getElementById(id).textContent = value;
  }

  function fill(tbody, rows) {
    const body = typeof tbody === 'string' ? document.querySelector(`#${tbody} tbody`) : tbody;
    body.replaceChildren(...rows);
  }

  function showError(message) {
    const box = document.getElementById('error');
    box.textContent = message;
    box.hidden = false;
  }

  const customerPage = (id) => `/dashboard/customers/${encodeURIComponent(id)}`;

  // The search box: one customer (by id, or the only one whose names begin with the
  // words) opens its page; several are listed (the first 20); none is said so.
  async function find(query) {
    const { items, next } = await api(`/customers?search=${encodeURIComponent(query)}&limit=20`);
    if (items.length === 1) {
      window.location.assign(customerPage(items[0].customer_id));
      return;
    }
    const box = document.getElementById('search-results');
    const names = (c) => [c.first_name, c.last_name].filter((n) => n).join(' ') || '—';
    document.getElementById('search-message').textContent = items.length === 0
      ? `No customer with the id or names “${query}”.`
      : `${next ? 'The first 20' : items.length} customers for “${query}”:`;
    box.querySelector('ul').replaceChildren(...items.map((c) => el('li', { 'data-customer': c.customer_id },
      el('a', { href: customerPage(c.customer_id) }, c.customer_id),
      ` ${names(c)}, ${text(c.city)} (${text(c.segment)})`)));
    box.hidden = false;
  }

  // Run the page's loader; the body's data-state says when it is done (tests wait on it).
  function start(load) {
    document.getElementById('search').addEventListener('submit', (event) => {
      event.preventDefault();
      const query = document.getElementById('search-id').value.trim();
      if (query) find(query).catch((error) => showError(error.message));
    });
    load().then(
      () => { document.body.dataset.state = 'ready'; },
      (error) => {
        showError(error.message);
        document.body.dataset.state = 'error';
      },
    );
  }

  return {
    el, api, cents, moneyOfCents, money, count, pct, percent, shareCell, risk, text, time, set, fill,
    showError, start,
  };
})();
