// The hlgateway dashboard: markets, one market in depth, my account, admin.
// Built on the gateway's own JavaScript client (/client.js); no framework.
import { TradingWebSocket, mergeCandles, tokenExpiry } from '/client.js';
import { PriceChart, drawCandles, drawDepth, formatPrice } from './charts.js';

const TOKEN_KEY = 'hlgateway.token';
const $ = (id) => document.getElementById(id);

// A token given in the address (?token=) is taken once and removed from it at once.
function takeTokenFromAddress() {
  const url = new URL(globalThis.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  url.searchParams.delete('token');
  globalThis.history.replaceState(null, '', url.pathname + url.search + url.hash);
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
}
takeTokenFromAddress();

// Opened inside Telegram (the notifier's /dashboard button): Telegram puts its signed
// initData in the fragment. The gateway trades it for a short-lived token limited to the
// wallets that chat watches; it is taken once and removed from the address at once, and
// kept in memory only, to get a fresh token before this one runs out.
let telegramInitData = null;
function takeTelegramLogin() {
  const data = new URLSearchParams(globalThis.location.hash.slice(1)).get('tgWebAppData');
  if (data === null) return;
  telegramInitData = data;
  sessionStorage.removeItem(TOKEN_KEY);
  globalThis.history.replaceState(null, '', `${globalThis.location.pathname}${globalThis.location.search}#account`);
}
takeTelegramLogin();

async function telegramToken() {
  const reply = await fetch('/api/telegram/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ initData: telegramInitData }),
  });
  if (!reply.ok) {
    telegramInitData = null; // refused (too old, no watched wallet): not worth asking again
    throw new Error(`Telegram login refused: ${(await reply.text()).slice(0, 200)}`);
  }
  const { token } = await reply.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

function claimsOf(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
  } catch (e) {
    return null;
  }
}

const fmtNumber = (v, digits = 2) => (v === undefined || v === null ? '–'
  : Number(v).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const fmtCompact = (v) => (v === undefined || v === null ? '–'
  : Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 }).format(v));
const fmtTime = (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
const fmtPct = (v) => (v === undefined || v === null ? '–' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}%`);
const signClass = (v) => (v > 0 ? 'up' : v < 0 ? 'down' : '');

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const [text, className] of cells) tr.append(cell(text, className));
  return tr;
}

// -- state ---------------------------------------------------------------------------------
const state = {
  view: 'markets',
  markets: new Map(), // symbol -> {price, change24h, volume24h, timestamp, prev}
  kinds: new Map(), // symbol -> perp | spot | dex-perp (GET /api/markets)
  kind: '', // the kind shown ('' for all)
  history: new Map(), // symbol -> [[ms, price]...]
  sort: { key: 'volume24h', dir: -1 },
  filter: '',
  symbol: 'BTC',
  depth: 10,
  interval: '1m',
  candles: null, // the `candles` series of symbol/interval: {symbol, interval, candles}
  book: null,
  trades: [],
  user: null, // {id, role, wallets} from the token in use, null for a guest
  welcomeUser: null,
  orders: new Map(), // id -> order (open only)
  orderUpdates: [],
  fills: [],
  ledger: [],
  accounts: new Map(), // wallet -> account_updates data
  admin: null,
  adminPrev: null,
  link: { state: 'connecting', connects: 0, brokeAt: null, reconnectAt: null, recovered: null },
};

let client = null;
const marketSubs = { orderbook: null, trades: null, candles: null };
const chart = new PriceChart($('price-chart'));

// -- connection ----------------------------------------------------------------------------
const wsUrl = `${globalThis.location.protocol === 'https:' ? 'wss' : 'ws'}://${globalThis.location.host}/ws`;

// Guest tokens for market data before login. Showing the current one (while valid) keeps
// the guest's id, so that the client's `auth` refresh before expiry is for the same user.
let guest = null; // {token, expiresAt}
async function guestToken() {
  const headers = guest && guest.expiresAt > Date.now() + 1000 ? { Authorization: `Bearer ${guest.token}` } : {};
  const reply = await fetch('/api/guest-token', { method: 'POST', headers });
  if (!reply.ok) throw new Error('no guest token: log in with a token');
  guest = await reply.json();
  return guest.token;
}

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function connect() {
  if (client) client.close();
  const token = currentToken();
  const claims = token ? claimsOf(token) : null;
  state.user = claims ? {
    id: String(claims.id ?? claims.sub ?? ''), role: claims.role || null,
    wallets: Array.isArray(claims.wallets) ? claims.wallets : [],
  } : null;
  resetAccount();
  state.link = { state: 'connecting', connects: 0, brokeAt: null, reconnectAt: null, recovered: null };
  setLink('connecting', 'connecting…');
  // A provider: a guest token is fetched afresh whenever one is needed; a user's token is
  // what was pasted (when the gateway refuses it, the page logs out, below).
  const provider = async () => {
    const token = currentToken();
    if (telegramInitData && (!token || (tokenExpiry(token) ?? Infinity) < Date.now() + 60000)) {
      return telegramToken();
    }
    return token || guestToken();
  };
  client = new TradingWebSocket(wsUrl, provider, { maxReconnectInterval: 10000 });
  const mine = client;
  client.on('welcome', (message) => mine === client && onWelcome(message));
  client.on('reconnecting', (info) => mine === client && onReconnecting(info));
  client.on('disconnected', (event) => mine === client && onDisconnected(event));
  client.on('subscribed', (message) => mine === client && onSubscribed(message));
  client.on('closed', (info) => mine === client && info.reason !== 'closed' && setLink('stopped', `stopped: ${info.reason}`));
  client.on('data:prices', (data) => mine === client && onPrices(data));
  client.on('data:orderbook', (data, params) => mine === client && onBook(data, params));
  client.on('data:trades', (data, params) => mine === client && onTrades(data, params));
  client.on('data:user_orders', (data) => mine === client && onOrder(data));
  client.on('data:user_fills', (data) => mine === client && onFills(data));
  client.on('data:account_updates', (data) => mine === client && onAccount(data));
  client.on('data:candles', (data, params) => mine === client && onCandles(data, params));
  client.on('data:user_ledger', (data) => mine === client && onLedger(data));
  client.subscribeToPrices([]).catch(() => {});
  subscribeMarket();
  if (state.user && state.user.wallets.length) {
    for (const channel of ['user_orders', 'user_fills', 'account_updates', 'user_ledger']) {
      client.subscribe(channel, { userId: state.user.id }).catch((error) => note(error.message));
    }
  }
  renderWho();
  scheduleRender();
}

function subscribeMarket() {
  for (const [channel, params] of Object.entries(marketSubs)) {
    if (params) client.unsubscribe(channel, params).catch(() => {});
  }
  marketSubs.orderbook = { symbol: state.symbol, depth: state.depth };
  marketSubs.trades = { symbol: state.symbol };
  marketSubs.candles = { symbol: state.symbol, interval: state.interval };
  state.book = null;
  state.trades = [];
  state.candles = null;
  client.subscribeToOrderBook(state.symbol, state.depth).catch(() => {});
  client.subscribeToTrades(state.symbol).catch(() => {});
  client.subscribeToCandles(state.symbol, state.interval)
    .catch((error) => { $('candle-note').textContent = error.message; });
  chart.reset(state.history.get(state.symbol) || []);
}

// The kind of every market (the table's filter), refreshed now and then: listings change.
async function loadKinds() {
  try {
    const reply = await fetch('/api/markets');
    if (!reply.ok) return;
    const { markets } = await reply.json();
    state.kinds = new Map(markets.map((m) => [m.symbol, m.kind]));
    scheduleRender();
  } catch (error) {
    // the table still lists what `prices` sends; the kinds come with the next try
  }
}
setInterval(loadKinds, 60000);

function onWelcome(message) {
  state.welcomeUser = message.user;
  state.link.connects += 1;
  state.link.reconnectAt = null;
  if (state.link.connects === 1) {
    setLink('connected', 'connected');
  } else {
    // Snapshot streams come back with their latest value; lossless streams say in their
    // `subscribed` reply whether they were recovered from where they stopped.
    const seconds = state.link.brokeAt ? Math.round((Date.now() - state.link.brokeAt) / 1000) : 0;
    state.link.recovered = null;
    state.link.breakSeconds = seconds;
    setLink('resynced', `connected · resynced after a ${seconds} s break`);
  }
  state.link.brokeAt = null;
}

function onSubscribed(message) {
  if (state.link.connects < 2 || message.recovered === undefined) return;
  const seconds = state.link.breakSeconds;
  if (message.recovered === false) {
    state.link.recovered = false;
    setLink('resynced', `connected · resynced after a ${seconds} s break (some history lost)`);
  } else if (state.link.recovered !== false) {
    state.link.recovered = true;
    setLink('recovered', `connected · recovered after a ${seconds} s break`);
  }
}

function onDisconnected(event) {
  if (state.link.brokeAt === null) state.link.brokeAt = Date.now();
  const refused = event && (event.code === 4001 || (event.code === 1008 && event.reason !== 'Too many errors'));
  if (refused && currentToken()) {
    // The pasted token is refused (expired, wrong secret): back to market data as a guest.
    sessionStorage.removeItem(TOKEN_KEY);
    $('login-note').textContent = `The gateway refused the token: ${event.reason || event.code}.`;
    setTimeout(connect, 0);
    return;
  }
  setLink('reconnecting', 'disconnected');
}

function onReconnecting(info) {
  state.link.reconnectAt = Date.now() + info.delay;
  tickLink();
}

function tickLink() {
  if (state.link.reconnectAt === null) return;
  const left = Math.max(0, Math.ceil((state.link.reconnectAt - Date.now()) / 1000));
  setLink('reconnecting', left > 0 ? `reconnecting in ${left} s` : 'reconnecting…');
}
setInterval(tickLink, 250);

function setLink(kind, text) {
  state.link.state = kind;
  const el = $('link-state');
  el.dataset.state = kind;
  el.textContent = text;
}

// -- data ----------------------------------------------------------------------------------
function onPrices(data) {
  for (const [symbol, tick] of Object.entries(data)) {
    const old = state.markets.get(symbol);
    state.markets.set(symbol, { ...tick, prev: old ? old.price : tick.price });
    let points = state.history.get(symbol);
    if (!points) state.history.set(symbol, (points = []));
    const last = points[points.length - 1];
    if (!last || last[0] < tick.timestamp) {
      points.push([tick.timestamp, tick.price]);
      if (points.length > 600) points.splice(0, points.length - 600);
      if (symbol === state.symbol) chart.push(tick.timestamp, tick.price);
    }
  }
  scheduleRender();
}

function onBook(data, params) {
  if (params.symbol !== state.symbol || params.depth !== state.depth) return;
  state.book = data;
  scheduleRender();
}

function onTrades(data, params) {
  if (params.symbol !== state.symbol) return;
  state.trades = [...data.trades.slice().reverse(), ...state.trades].slice(0, 60);
  scheduleRender();
}

// A candles subscription starts with the last 500, then updates the current candle.
function onCandles(data, params) {
  if (params.symbol !== state.symbol || params.interval !== state.interval) return;
  state.candles = state.candles ? mergeCandles(state.candles, data) : data;
  $('candle-note').textContent = '';
  scheduleRender();
}

function resetAccount() {
  state.orders.clear();
  state.orderUpdates = [];
  state.fills = [];
  state.ledger = [];
  state.accounts.clear();
}

function onLedger({ events }) {
  state.ledger = [...events.slice().reverse(), ...state.ledger].slice(0, 100);
  scheduleRender();
}

function onOrder({ action, order }) {
  if (action === 'created' || action === 'updated') state.orders.set(order.id, order);
  else state.orders.delete(order.id);
  state.orderUpdates.unshift({ at: order.timestamp, action, order });
  state.orderUpdates.length = Math.min(state.orderUpdates.length, 50);
  scheduleRender();
}

function onFills({ fills }) {
  state.fills = [...fills.slice().reverse(), ...state.fills].slice(0, 100);
  scheduleRender();
}

function onAccount(data) {
  state.accounts.set(data.wallet, data);
  scheduleRender();
}

function note(text) {
  $('account-note').textContent = text;
}

// -- rendering -----------------------------------------------------------------------------
let renderPending = false;
let lastRender = 0;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  const wait = Math.max(0, 200 - (Date.now() - lastRender));
  setTimeout(() => requestAnimationFrame(() => {
    renderPending = false;
    lastRender = Date.now();
    render();
  }), wait);
}

function render() {
  if (state.view === 'markets') renderMarkets();
  if (state.view === 'market') renderMarket();
  if (state.view === 'account') renderAccount();
  if (state.view === 'admin') renderAdmin();
}

function sortedMarkets() {
  const filter = state.filter.trim().toUpperCase();
  const kindOf = (symbol) => state.kinds.get(symbol) || '';
  const rows = [...state.markets.entries()].filter(([symbol]) => (!filter || symbol.toUpperCase().includes(filter))
    && (!state.kind || kindOf(symbol) === state.kind));
  const { key, dir } = state.sort;
  const value = (symbol, m) => (key === 'symbol' ? symbol : key === 'kind' ? kindOf(symbol) : m[key]);
  rows.sort(([a, x], [b, y]) => {
    const left = value(a, x);
    const right = value(b, y);
    return (left < right ? -1 : left > right ? 1 : 0) * dir;
  });
  return rows;
}

function renderMarkets() {
  const body = $('markets').tBodies[0];
  const rows = sortedMarkets();
  const existing = new Map([...body.rows].map((tr) => [tr.dataset.symbol, tr]));
  const fragment = document.createDocumentFragment();
  for (const [symbol, m] of rows) {
    let tr = existing.get(symbol);
    if (!tr) {
      tr = row([[symbol, 'symbol'], ['', 'num price'], ['', 'num change'], ['', 'num volume'], ['', 'kind hide-narrow']]);
      tr.dataset.symbol = symbol;
    }
    const [, price, change, volume, kind] = tr.cells;
    kind.textContent = state.kinds.get(symbol) || '';
    tr.dataset.kind = kind.textContent;
    const text = formatPrice(m.price);
    if (price.textContent !== text) {
      price.textContent = text;
      price.classList.remove('flash-up', 'flash-down');
      if (m.price !== m.prev) {
        void price.offsetWidth; // restart the animation
        price.classList.add(m.price > m.prev ? 'flash-up' : 'flash-down');
      }
    }
    change.textContent = fmtPct(m.change24h);
    change.className = `num change ${signClass(m.change24h)}`;
    volume.textContent = `$${fmtCompact(m.volume24h)}`;
    fragment.append(tr);
  }
  body.replaceChildren(fragment);
  $('market-count').textContent = `${rows.length} of ${state.markets.size} markets`;
  for (const th of $('markets').tHead.rows[0].cells) {
    const on = th.dataset.sort === state.sort.key;
    th.classList.toggle('sorted', on);
    th.classList.toggle('asc', on && state.sort.dir > 0);
    th.classList.toggle('desc', on && state.sort.dir < 0);
  }
}

function renderSymbolChoice() {
  const select = $('market-symbol');
  const symbols = [...state.markets.keys()].sort();
  if (!symbols.includes(state.symbol)) symbols.unshift(state.symbol);
  if (select.options.length !== symbols.length) {
    select.replaceChildren(...symbols.map((s) => new Option(s, s)));
  }
  select.value = state.symbol;
}

function renderMarket() {
  renderSymbolChoice();
  const m = state.markets.get(state.symbol);
  $('market-price').textContent = m ? formatPrice(m.price) : '–';
  $('market-change').textContent = m ? fmtPct(m.change24h) : '';
  $('market-change').className = m ? signClass(m.change24h) : '';
  chart.draw();
  $('candle-interval').value = state.interval;
  drawCandles($('candle-chart'), state.candles ? state.candles.candles : [], state.interval);
  const book = state.book;
  const asks = $('book-asks'); const bids = $('book-bids');
  if (!book) {
    asks.replaceChildren(); bids.replaceChildren();
    $('spread').textContent = '';
    $('book-mid-cell').textContent = 'waiting for the book…';
  } else {
    let total = 0;
    const askRows = book.asks.map(([p, s]) => { total += s; return row([[formatPrice(p), 'num'], [fmtNumber(s, 4), 'num'], [fmtNumber(total, 4), 'num']]); });
    asks.replaceChildren(...askRows.reverse());
    total = 0;
    bids.replaceChildren(...book.bids.map(([p, s]) => { total += s; return row([[formatPrice(p), 'num'], [fmtNumber(s, 4), 'num'], [fmtNumber(total, 4), 'num']]); }));
    if (book.bids.length && book.asks.length) {
      const bid = book.bids[0][0]; const ask = book.asks[0][0];
      const spread = ask - bid;
      const bps = (spread / ((ask + bid) / 2)) * 10000;
      $('spread').textContent = `spread ${formatPrice(spread, bid)} (${bps.toFixed(2)} bps)`;
      $('book-mid-cell').textContent = `mid ${formatPrice((ask + bid) / 2)}`;
    }
    drawDepth($('depth-chart'), book.bids, book.asks);
  }
  $('trades').replaceChildren(...state.trades.map((t) => row([
    [fmtTime(t.timestamp), 'muted'],
    [formatPrice(t.price), `num ${t.side === 'B' || t.side === 'buy' ? 'up' : 'down'}`],
    [fmtNumber(t.size, 4), 'num'],
  ])));
}

function card(label, value, className = '') {
  const div = document.createElement('div');
  div.className = 'card';
  const l = document.createElement('div'); l.className = 'label'; l.textContent = label;
  const v = document.createElement('div'); v.className = `value ${className}`; v.textContent = value;
  div.append(l, v);
  return div;
}

function renderAccount() {
  const loggedIn = Boolean(state.user);
  $('login').hidden = loggedIn;
  $('account').hidden = !loggedIn;
  if (!loggedIn) return;
  $('account-user').textContent = `user ${state.user.id}${state.user.role ? ` (${state.user.role})` : ''} · ${state.user.wallets.length} wallet(s)`;
  if (!state.user.wallets.length) note('This token holds no wallets: no orders, fills or account to show.');
  const accounts = [...state.accounts.values()];
  const sum = (key) => accounts.reduce((acc, a) => acc + (a[key] || 0), 0);
  $('margin').replaceChildren(
    card('Account value', `$${fmtNumber(sum('accountValue'))}`),
    card('Margin used', `$${fmtNumber(sum('marginUsed'))}`),
    card('Withdrawable', `$${fmtNumber(sum('withdrawable'))}`),
    card('Open orders', String(state.orders.size)),
  );
  const positions = accounts.flatMap((a) => a.positions || []);
  $('positions').replaceChildren(...positions.map((p) => row([
    [p.symbol], [fmtNumber(p.size, 4), `num ${signClass(p.size)}`], [formatPrice(p.entryPrice), 'num'],
    [`$${fmtNumber(p.positionValue)}`, 'num'], [fmtNumber(p.unrealizedPnl), `num ${signClass(p.unrealizedPnl)}`],
    [p.liquidationPrice ? formatPrice(p.liquidationPrice) : '–', 'num'],
  ])));
  const orders = [...state.orders.values()].sort((a, b) => b.timestamp - a.timestamp);
  $('orders-count').textContent = `(${orders.length})`;
  $('orders').replaceChildren(...orders.map((o) => row([
    [o.symbol], [o.side, o.side === 'buy' || o.side === 'B' ? 'up' : 'down'], [formatPrice(o.price), 'num'],
    [fmtNumber(o.amount, 4), 'num'], [fmtNumber(o.remaining, 4), 'num'], [o.status, 'muted'],
  ])));
  $('order-updates').replaceChildren(...state.orderUpdates.map(({ at, action, order }) => {
    const li = document.createElement('li');
    li.textContent = `${fmtTime(at)} ${action} ${order.side} ${fmtNumber(order.amount, 4)} ${order.symbol} @ ${formatPrice(order.price)} (${order.status})`;
    return li;
  }));
  $('fills-count').textContent = `(${state.fills.length})`;
  $('fills').replaceChildren(...state.fills.map((f) => row([
    [fmtTime(f.timestamp), 'muted'], [f.symbol], [f.side, f.side === 'buy' || f.side === 'B' ? 'up' : 'down'],
    [formatPrice(f.price), 'num'], [fmtNumber(f.size, 4), 'num'], [fmtNumber(f.fee, 4), 'num'],
    [fmtNumber(f.closedPnl), `num ${signClass(f.closedPnl)}`],
  ])));
  $('ledger-count').textContent = `(${state.ledger.length})`;
  $('ledger').replaceChildren(...state.ledger.map((e) => row([
    [fmtTime(e.time), 'muted'], [e.kind], [fmtNumber(e.amount, 2), `num ${e.kind === 'liquidation' ? 'down' : signClass(e.amount)}`],
    [e.token], [e.symbol || (e.raw && e.raw.type) || '', 'muted'],
  ])));
}

function renderWho() {
  $('who').textContent = state.user ? `logged in: ${state.user.id}` : 'guest (market data)';
  $('admin-tab').hidden = !(state.user && state.user.role === 'admin');
}

// -- admin ---------------------------------------------------------------------------------
async function pollAdmin() {
  if (state.view !== 'admin' || !state.user || state.user.role !== 'admin') return;
  try {
    const reply = await fetch('/api/admin/overview', { headers: { Authorization: `Bearer ${currentToken()}` } });
    if (!reply.ok) throw new Error(`${reply.status} ${await reply.text()}`);
    state.adminPrev = state.admin;
    state.admin = await reply.json();
    renderAdmin();
  } catch (error) {
    $('admin-limits').textContent = `overview failed: ${error.message}`;
  }
}
setInterval(pollAdmin, 2000);

function renderAdmin() {
  const a = state.admin;
  if (!a) return;
  $('admin-totals').replaceChildren(
    card('Status', a.status, a.status === 'healthy' ? 'up' : 'down'),
    card('Clients', String(a.totals.clients)),
    card('Subscriptions', String(a.totals.subscriptions)),
    card('Topics', String(a.totals.topics)),
    card('Queued bytes', fmtCompact(a.counters.queuedBytes)),
    card('4008 closes', String(a.counters.slowConsumerCloses)),
  );
  $('admin-totals').dataset.clients = String(a.totals.clients);
  const prev = state.adminPrev;
  const rates = [];
  if (prev) {
    const dt = (a.timestamp - prev.timestamp) / 1000 || 1;
    let total = 0;
    for (const [channel, n] of Object.entries(a.counters.messagesOut)) {
      const rate = (n - (prev.counters.messagesOut[channel] || 0)) / dt;
      total += rate;
      rates.push(card(`${channel} msg/s`, fmtNumber(rate, 1)));
    }
    const bytes = Object.entries(a.counters.bytesOut).reduce((acc, [c, n]) => acc + n - (prev.counters.bytesOut[c] || 0), 0) / dt;
    const dc = a.counters.delivery.count - prev.counters.delivery.count;
    const ds = a.counters.delivery.sumSeconds - prev.counters.delivery.sumSeconds;
    rates.unshift(card('messages/s', fmtNumber(total, 1)), card('bytes/s', fmtCompact(bytes)),
      card('mean delivery', dc > 0 ? `${fmtNumber((ds / dc) * 1000, 2)} ms` : '–'));
  } else {
    rates.push(card('rates', 'measuring…'));
  }
  $('admin-rates').replaceChildren(...rates);
  const up = a.upstream;
  $('admin-upstream').textContent = `${up.status} · ${up.network} (${up.host}) · links ${up.limits.links} · subscriptions ${up.limits.subscriptions} · messages last minute ${up.limits.messagesLastMinute} · REST weight available ${up.limits.restWeightAvailable}`;
  $('admin-links').replaceChildren(...up.links.map((l) => row([
    [`#${l.index}`], [l.state, l.state === 'connected' ? 'up' : 'down'], [String(l.subscriptions), 'num'],
    [String(l.reconnects), 'num'], [l.lastMessageAgeSeconds === null ? '–' : `${l.lastMessageAgeSeconds} s`, 'num'],
  ])));
  $('admin-clients').replaceChildren(...a.clients.map((c) => row([
    [c.clientId], [`${c.user}${c.role ? ` (${c.role})` : ''}`], [c.ip], [String(c.subscriptions), 'num'],
  ])));
  $('admin-topics').replaceChildren(...a.topics.map((t) => row([
    [t.channel], [JSON.stringify(t.params), 'muted'], [String(t.subscribers), 'num'],
  ])));
  $('admin-limits').textContent = JSON.stringify(a.limits, null, 1);
}

async function publish(event) {
  event.preventDefault();
  const room = $('publish-room').value.trim();
  const raw = $('publish-data').value;
  let data;
  try { data = JSON.parse(raw); } catch (e) { data = raw; }
  try {
    const reply = await fetch(`/api/rooms/${encodeURIComponent(room)}/publish`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${currentToken()}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ data }),
    });
    const text = await reply.text();
    $('publish-result').textContent = reply.ok ? `delivered to ${JSON.parse(text).delivered}` : `${reply.status}: ${text}`;
  } catch (error) {
    $('publish-result').textContent = `failed: ${error.message}`;
  }
}

// -- navigation and controls --------------------------------------------------------------
function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll('nav a')) link.classList.toggle('active', link.dataset.view === view);
  render();
  if (view === 'admin') pollAdmin();
}

// `#market/<symbol>`: the symbol is encoded (spot pairs are BASE/QUOTE).
function route() {
  const [view, ...rest] = (globalThis.location.hash.slice(1) || 'markets').split('/');
  const symbol = rest.length ? decodeURIComponent(rest.join('/')) : '';
  if (view === 'market' && symbol && symbol !== state.symbol) {
    state.symbol = symbol;
    if (client) subscribeMarket();
  }
  show(['markets', 'market', 'account', 'admin'].includes(view) ? view : 'markets');
}

$('markets').tHead.addEventListener('click', (event) => {
  const key = event.target.closest('th')?.dataset.sort;
  if (!key) return;
  state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: key === 'symbol' ? 1 : -1 };
  renderMarkets();
});
$('markets').tBodies[0].addEventListener('click', (event) => {
  const symbol = event.target.closest('tr')?.dataset.symbol;
  if (symbol) globalThis.location.hash = `market/${encodeURIComponent(symbol)}`;
});
$('market-filter').addEventListener('input', (event) => { state.filter = event.target.value; renderMarkets(); });
$('market-kind').addEventListener('change', (event) => { state.kind = event.target.value; renderMarkets(); });
$('market-symbol').addEventListener('change', (event) => {
  globalThis.location.hash = `market/${encodeURIComponent(event.target.value)}`;
});
$('candle-interval').addEventListener('change', (event) => {
  state.interval = event.target.value;
  subscribeMarket();
  renderMarket();
});
$('book-depth').addEventListener('change', (event) => {
  state.depth = Number(event.target.value);
  subscribeMarket();
  renderMarket();
});
$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token-input').value.trim();
  $('token-input').value = '';
  if (!token) return;
  const expires = tokenExpiry(token);
  if (!claimsOf(token) || (expires !== null && expires < Date.now())) {
    $('login-note').textContent = 'That is not a valid, unexpired token.';
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login-note').textContent = '';
  note('');
  connect();
});
$('logout-button').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  telegramInitData = null;
  note('');
  connect();
  if (state.view === 'admin') globalThis.location.hash = 'markets';
});
$('publish').addEventListener('submit', publish);
globalThis.addEventListener('hashchange', route);
globalThis.addEventListener('resize', () => state.view === 'market' && renderMarket());

loadKinds();
if (telegramInitData) {
  // Log in first, then connect as that user (a refusal leaves the page on market data).
  telegramToken().catch((error) => note(error.message)).finally(() => { connect(); route(); });
} else {
  connect();
  route();
}
