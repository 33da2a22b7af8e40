// hlgateway JavaScript client, served by the gateway at /client.js (an ES module).
//
// The seed's TradingWebSocket (same methods, same events), plus:
// - reconnect with exponential backoff and jitter (reconnectInterval 1 s, reconnectDecay 1.5,
//   maxReconnectInterval 30 s, maxReconnectAttempts: Infinity by default);
// - subscriptions keyed by channel + params (two `orderbook` subscriptions both come back),
//   re-keyed to the gateway's canonical params when it confirms them, restored after `welcome`;
// - a bounded queue of what is sent while disconnected (maxQueueSize);
// - replies matched by `id`: subscribe() and ping() return promises;
// - no reconnect after close 1008 (token refused) or 4001 (token expired) unless the token is a
//   provider function that can give a fresh one; with a provider, `auth` refreshes the token
//   before it expires.
//
//   import { TradingWebSocket } from 'http://127.0.0.1:8080/client.js';
//   const client = new TradingWebSocket('ws://127.0.0.1:8080/ws', token);
//   client.on('data:prices', (prices, params) => console.log(prices));
//   client.subscribeToPrices(['BTC', 'ETH']);
//
// Events: connected, welcome, disconnected, reconnecting, maxReconnectAttemptsReached,
// subscribed, unsubscribed, data, data:<channel>, error, pong, authenticated, authFailed,
// shutdown, room_joined, room_left, message (an unknown type), closed.

const OPEN = 1;
const TOKEN_EXPIRED = 4001;
const POLICY = 1008;
const TOO_MANY_ERRORS = 'Too many errors';
const SNAPSHOT_CHANNELS = new Set(['prices', 'orderbook', 'account_updates']);

export const DEFAULT_OPTIONS = Object.freeze({
  maxReconnectAttempts: Infinity,
  reconnectInterval: 1000,
  reconnectDecay: 1.5,
  maxReconnectInterval: 30000,
  jitter: 0.5,
  maxQueueSize: 1000,
  refreshBeforeMs: 30000,
  requestTimeoutMs: 10000,
  autoConnect: true,
  WebSocket: undefined, // defaults to globalThis.WebSocket
  logger: undefined, // e.g. console; silent by default
});

/** A subscription the gateway refused (FORBIDDEN, INVALID_PARAMS, ...). */
export class SubscriptionRefusedError extends Error {
  constructor(message) {
    super(`${message.code}: ${message.message}`);
    this.name = 'SubscriptionRefusedError';
    this.code = message.code;
    this.channel = message.channel;
    this.params = message.params;
    this.reply = message;
  }
}

/** An error reply to another request (ping, auth, ...). */
export class RequestFailedError extends Error {
  constructor(message) {
    super(`${message.code}: ${message.message}`);
    this.name = 'RequestFailedError';
    this.code = message.code;
    this.reply = message;
  }
}

export class SendQueueFullError extends Error {
  constructor(size) {
    super(`${size} messages already wait for the connection`);
    this.name = 'SendQueueFullError';
  }
}

/** The client's normal form of params: keys sorted, empty values dropped, symbol lists sorted. */
export function normalizeParams(params) {
  const out = {};
  for (const name of Object.keys(params || {}).sort()) {
    let value = params[name];
    if (value === undefined || value === null) continue;
    if (name === 'symbols' && Array.isArray(value)) {
      if (value.length === 0) continue; // no symbols = every market
      value = [...new Set(value.map(String))].sort();
    }
    if (name === 'throttle' && value === 0) continue;
    out[name] = value;
  }
  return out;
}

/** The delay (ms) before reconnect attempt `attempt` (1-based): capped exponential, jittered. */
export function backoffDelay(attempt, options, random = Math.random) {
  let delay = options.reconnectInterval;
  for (let i = 1; i < attempt && delay < options.maxReconnectInterval; i += 1) {
    delay *= options.reconnectDecay;
  }
  delay = Math.min(delay, options.maxReconnectInterval);
  return delay * (1 - options.jitter * random());
}

/** The `exp` claim of a JWT in ms (not verified), or null. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(globalThis.atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch (e) {
    return null;
  }
}

function handled(promise) {
  promise.catch(() => {}); // the caller may ignore it: no unhandled rejection
  return promise;
}

export class TradingWebSocket {
  constructor(url, token, options = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.url = url;
    this.tokenProvider = typeof token === 'function' ? token : null;
    this.token = typeof token === 'function' ? null : token;
    this.ws = null;
    this.isConnected = false;
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = this.options.maxReconnectAttempts;
    this.reconnectInterval = this.options.reconnectInterval;
    this.subscriptions = new Map(); // key -> entry {channel, params, confirmed, inFlight, waiters}
    this.eventHandlers = new Map();
    this.messageQueue = [];
    this.connects = 0;
    this.closedByUser = false;
    this.stopped = false;
    this._pending = new Map(); // id -> {kind, resolve, reject, entry, sentAt}
    this._orphans = [];
    this._nextId = 1;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._needFreshToken = false;
    this._latest = new Map(); // key -> last snapshot data message

    if (this.options.autoConnect) this.connect();
  }

  log(level, ...args) {
    const logger = this.options.logger;
    if (logger && typeof logger[level] === 'function') logger[level](...args);
  }

  // -- connection -------------------------------------------------------------------------
  connect() {
    if (this.stopped) return;
    this._openLink().catch((error) => {
      this.log('error', 'WebSocket connection failed:', error);
      this.emit('error', error);
      this.scheduleReconnect();
    });
  }

  async _openLink() {
    if (this.tokenProvider && (this.token === null || this._needFreshToken)) {
      this.token = await this.tokenProvider();
    }
    this._needFreshToken = false;
    this._expiresAt = null;
    if (this.stopped) return;
    const Impl = this.options.WebSocket || globalThis.WebSocket;
    const sep = this.url.includes('?') ? '&' : '?';
    const ws = new Impl(`${this.url}${sep}token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    ws.onopen = (event) => { if (this.ws === ws) this.handleOpen(event); };
    ws.onmessage = (event) => { if (this.ws === ws) this.handleMessage(event); };
    ws.onclose = (event) => { if (this.ws === ws) this.handleClose(event); };
    ws.onerror = (event) => { if (this.ws === ws) this.handleError(event); };
  }

  handleOpen() {
    // The link is open, but the gateway may still refuse the token (1008): the client
    // counts as connected when `welcome` arrives.
    this.log('log', 'WebSocket open');
  }

  handleWelcome(message) {
    this.isConnected = true;
    this.reconnectAttempts = 0;
    this.connects += 1;
    // Restore every subscription and room, then what was sent while disconnected.
    for (const entry of this.subscriptions.values()) this._sendSubscribe(entry);
    const queued = this.messageQueue.splice(0);
    for (const item of queued) this._write(item);
    this.emit('welcome', message);
    this.emit('connected', message);
    this._scheduleRefresh(this._expiresAt ?? tokenExpiry(this.token));
  }

  handleMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      this.log('error', 'Error parsing WebSocket message:', error);
      return;
    }
    const pending = message.id !== undefined ? this._pending.get(message.id) : undefined;
    if (pending) this._pending.delete(message.id);

    switch (message.type) {
      case 'welcome':
        this.handleWelcome(message);
        break;
      case 'data':
        this.handleDataMessage(message);
        break;
      case 'subscribed':
      case 'room_joined':
        if (pending && pending.entry) {
          const params = message.type === 'subscribed' ? message.params : { room: message.room };
          this._confirm(pending.entry, params);
        }
        this.emit(message.type, message);
        break;
      case 'unsubscribed':
      case 'room_left':
        if (pending) pending.resolve(message);
        this.emit(message.type, message);
        break;
      case 'error':
        this._handleErrorReply(message, pending);
        break;
      case 'pong':
        if (pending) pending.resolve(Date.now() - pending.sentAt);
        this.emit('pong', message);
        break;
      case 'authenticated':
        if (pending) pending.resolve(message);
        this.emit('authenticated', message);
        break;
      case 'shutdown':
        this.emit('shutdown', message);
        break;
      default:
        if (pending) pending.resolve(message);
        this.emit('message', message);
    }
  }

  handleDataMessage(message) {
    const { channel, params, data } = message;
    const key = this.createSubscriptionKey(channel, params);
    if (SNAPSHOT_CHANNELS.has(channel) && this.subscriptions.has(key)) {
      this._latest.set(key, message);
    }
    // Emit specific channel event
    this.emit(`data:${channel}`, data, params);
    // Emit generic data event
    this.emit('data', { channel, params, data });
  }

  handleClose(event) {
    const wasConnected = this.isConnected;
    this.isConnected = false;
    this.ws = null;
    this._clearRefresh();
    for (const [id, pending] of this._pending) {
      if (!pending.entry) pending.reject(new Error(`Connection lost before the reply to ${pending.kind}`));
      this._pending.delete(id);
    }
    for (const entry of this.subscriptions.values()) entry.inFlight = false;
    this._orphans = [];
    this.log('log', 'WebSocket disconnected:', event.code, event.reason);
    this.emit('disconnected', event);
    if (this.closedByUser || this.stopped) return;

    const authRefused = event.code === TOKEN_EXPIRED
      || (event.code === POLICY && event.reason !== TOO_MANY_ERRORS);
    if (authRefused) {
      if (!this.tokenProvider) {
        // A fixed token that the gateway refused will be refused again: stop.
        this._stop('authFailed', event);
        return;
      }
      this._needFreshToken = true;
      if (wasConnected && event.code === TOKEN_EXPIRED) {
        this.connect(); // expired while up: come back at once with a fresh token
        return;
      }
    }
    this.scheduleReconnect();
  }

  handleError(error) {
    this.log('error', 'WebSocket error:', error);
    this.emit('error', error);
  }

  scheduleReconnect() {
    if (this.closedByUser || this.stopped || this._reconnectTimer) return;
    if (this.reconnectAttempts < this.maxReconnectAttempts) {
      this.reconnectAttempts++;
      const delay = backoffDelay(this.reconnectAttempts, this.options);
      this.log('log', `Reconnecting in ${Math.round(delay)}ms (attempt ${this.reconnectAttempts})`);
      this.emit('reconnecting', { attempt: this.reconnectAttempts, delay });
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = null;
        this.connect();
      }, delay);
    } else {
      this.log('error', 'Max reconnection attempts reached');
      this._stop('maxReconnectAttemptsReached', { attempts: this.reconnectAttempts });
    }
  }

  _stop(event, detail) {
    this.stopped = true;
    this._clearRefresh();
    for (const entry of this.subscriptions.values()) {
      this._settle(entry, (w) => w.reject(new Error(`Client stopped: ${event}`)));
    }
    this.emit(event, detail);
    this.emit('closed', { reason: event, detail });
  }

  // -- sending ----------------------------------------------------------------------------
  send(message) {
    if (this.isConnected && this.ws && this.ws.readyState === OPEN) {
      this._write({ message });
    } else {
      this._queue({ message });
    }
  }

  _queue(item) {
    if (this.messageQueue.length >= this.options.maxQueueSize) {
      const error = new SendQueueFullError(this.options.maxQueueSize);
      this.emit('error', error);
      throw error;
    }
    // Queue message for when connection is established
    this.messageQueue.push(item);
  }

  _write(item) {
    let { message } = item;
    if (item.pending) {
      const id = `j${this._nextId++}`;
      message = { ...message, id };
      item.pending.sentAt = Date.now();
      this._pending.set(id, item.pending);
    }
    this.ws.send(JSON.stringify(message));
  }

  _request(message, kind) {
    return handled(new Promise((resolve, reject) => {
      const item = { message, pending: { kind, resolve, reject, entry: null, sentAt: 0 } };
      if (this.isConnected && this.ws && this.ws.readyState === OPEN) this._write(item);
      else this._queue(item);
    }));
  }

  _sendSubscribe(entry) {
    if (!this.ws || this.ws.readyState !== OPEN) return;
    entry.inFlight = true;
    const message = entry.channel === 'room'
      ? { type: 'join_room', room: entry.params.room }
      : { type: 'subscribe', channel: entry.channel, params: entry.params };
    this._write({ message, pending: { kind: 'subscribe', entry, resolve() {}, reject() {} } });
  }

  _sendUnsubscribe(entry) {
    if (!this.isConnected || !this.ws || this.ws.readyState !== OPEN) return Promise.resolve();
    const message = entry.channel === 'room'
      ? { type: 'leave_room', room: entry.params.room }
      : { type: 'unsubscribe', channel: entry.channel, params: entry.params };
    return this._request(message, 'unsubscribe').catch(() => {});
  }

  // -- subscriptions ----------------------------------------------------------------------
  subscribe(channel, params = {}) {
    const key = this.createSubscriptionKey(channel, params);
    let entry = this.subscriptions.get(key);
    const promise = handled(new Promise((resolve, reject) => {
      if (entry && entry.confirmed) {
        resolve({ channel: entry.channel, params: entry.params });
        return;
      }
      if (!entry) {
        entry = { channel, params: normalizeParams(params), key, confirmed: false, inFlight: false, waiters: [] };
        this.subscriptions.set(key, entry);
      }
      entry.waiters.push({ resolve, reject });
    }));
    if (this.isConnected && !entry.confirmed && !entry.inFlight) this._sendSubscribe(entry);
    return promise;
  }

  unsubscribe(channel, params = {}) {
    const key = this.createSubscriptionKey(channel, params);
    const entry = this.subscriptions.get(key);
    if (!entry) return Promise.resolve();
    this.subscriptions.delete(key);
    this._latest.delete(key);
    this._settle(entry, (w) => w.reject(new Error('Unsubscribed')));
    if (entry.inFlight) {
      // The reply will tell which subscription this was; drop it then.
      this._orphans.push(entry);
      return Promise.resolve();
    }
    return this._sendUnsubscribe(entry);
  }

  _confirm(entry, canonical) {
    entry.inFlight = false;
    const orphan = this._orphans.indexOf(entry);
    const newKey = this.createSubscriptionKey(entry.channel, canonical);
    if (orphan >= 0) {
      this._orphans.splice(orphan, 1);
      if (!this.subscriptions.has(newKey)) {
        entry.params = normalizeParams(canonical);
        this._sendUnsubscribe(entry);
      }
      return;
    }
    if (this.subscriptions.get(entry.key) === entry) this.subscriptions.delete(entry.key);
    const other = this.subscriptions.get(newKey);
    const target = other && other !== entry ? other : entry;
    if (target === entry) {
      entry.key = newKey;
      entry.params = normalizeParams(canonical);
      this.subscriptions.set(newKey, entry);
    } else {
      target.waiters.push(...entry.waiters.splice(0));
    }
    target.confirmed = true;
    this._settle(target, (w) => w.resolve({ channel: target.channel, params: target.params }));
  }

  _handleErrorReply(message, pending) {
    if (pending && pending.entry) {
      const entry = pending.entry;
      entry.inFlight = false;
      if (this.subscriptions.get(entry.key) === entry) this.subscriptions.delete(entry.key);
      const orphan = this._orphans.indexOf(entry);
      if (orphan >= 0) this._orphans.splice(orphan, 1);
      const error = new SubscriptionRefusedError(message);
      this._settle(entry, (w) => w.reject(error));
    } else if (pending) {
      if (pending.kind === 'unsubscribe' && message.code === 'NOT_SUBSCRIBED') {
        pending.resolve(message);
        return;
      }
      pending.reject(new RequestFailedError(message));
    }
    this.log('error', 'WebSocket error:', message.message);
    this.emit('error', message);
  }

  _settle(entry, fn) {
    const waiters = entry.waiters.splice(0);
    for (const waiter of waiters) fn(waiter);
  }

  /** The last data message of a snapshot subscription (prices, orderbook, account_updates). */
  latest(channel, params = {}) {
    const message = this._latest.get(this.createSubscriptionKey(channel, params));
    return message ? message.data : undefined;
  }

  /** Round trip in ms (a promise); queued while disconnected. */
  ping() {
    return this._request({ type: 'ping' }, 'ping');
  }

  /** Send `auth` with a token (or a fresh one from the provider). */
  async authenticate(token) {
    const fresh = token ?? (this.tokenProvider ? await this.tokenProvider() : this.token);
    const reply = await this._request({ type: 'auth', token: fresh }, 'auth');
    this.token = fresh;
    this._expiresAt = reply.expiresAt ?? tokenExpiry(fresh);
    return reply;
  }

  _scheduleRefresh(expiresAt) {
    this._clearRefresh();
    if (!this.tokenProvider || expiresAt === null || expiresAt === undefined) return;
    const remaining = expiresAt - Date.now();
    const wait = Math.max(0, remaining - Math.min(this.options.refreshBeforeMs, remaining / 2));
    this._refreshTimer = setTimeout(async () => {
      this._refreshTimer = null;
      try {
        const reply = await this.authenticate();
        this._scheduleRefresh(reply.expiresAt ?? tokenExpiry(this.token));
      } catch (error) {
        if (!(error instanceof RequestFailedError)) this.emit('error', error);
        if (!this.isConnected) return;
        const left = expiresAt - Date.now();
        this._refreshTimer = setTimeout(
          () => this._scheduleRefresh(expiresAt),
          Math.max(500, Math.min(5000, left / 4)),
        );
      }
    }, wait);
  }

  _clearRefresh() {
    if (this._refreshTimer) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  // -- events -----------------------------------------------------------------------------
  on(event, handler) {
    if (!this.eventHandlers.has(event)) {
      this.eventHandlers.set(event, []);
    }
    this.eventHandlers.get(event).push(handler);
  }

  off(event, handler) {
    if (this.eventHandlers.has(event)) {
      const handlers = this.eventHandlers.get(event);
      const index = handlers.indexOf(handler);
      if (index > -1) {
        handlers.splice(index, 1);
      }
    }
  }

  emit(event, ...args) {
    if (this.eventHandlers.has(event)) {
      [...this.eventHandlers.get(event)].forEach((handler) => {
        try {
          handler(...args);
        } catch (error) {
          this.log('error', 'Error in event handler:', error);
        }
      });
    }
  }

  createSubscriptionKey(channel, params) {
    return `${channel}:${JSON.stringify(normalizeParams(params))}`;
  }

  close() {
    this.closedByUser = true;
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._clearRefresh();
    for (const entry of this.subscriptions.values()) {
      this._settle(entry, (w) => w.reject(new Error('Client closed')));
    }
    this.subscriptions.clear();
    if (this.ws) {
      this.ws.close(1000, 'Client closing');
    }
    this.emit('closed', { reason: 'closed' });
  }

  // Utility methods for trading bot
  subscribeToPrices(symbols = []) {
    return this.subscribe('prices', { symbols });
  }

  subscribeToOrderBook(symbol, depth = 10) {
    return this.subscribe('orderbook', { symbol, depth });
  }

  subscribeToTrades(symbol) {
    return this.subscribe('trades', { symbol });
  }

  subscribeToUserOrders(userId, wallet) {
    return this.subscribe('user_orders', { userId, wallet });
  }

  subscribeToUserFills(userId, wallet) {
    return this.subscribe('user_fills', { userId, wallet });
  }

  subscribeToAccountUpdates(userId, wallet) {
    return this.subscribe('account_updates', { userId, wallet });
  }

  joinRoom(room) {
    return this.subscribe('room', { room });
  }

  leaveRoom(room) {
    return this.unsubscribe('room', { room });
  }
}

export default TradingWebSocket;
