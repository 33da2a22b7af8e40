// hlgateway JavaScript client, served by the gateway at /client.js (an ES module).
//
// The seed's TradingWebSocket (same methods, same events), plus:
// - reconnect with exponential backoff and jitter (reconnectInterval 1 s, reconnectDecay 1.5,
//   maxReconnectInterval 30 s, maxReconnectAttempts: Infinity by default);
// - subscriptions keyed by channel + params (two `orderbook` subscriptions both come back),
//   re-keyed to the gateway's canonical params when it confirms them, restored after `welcome`;
// - a bounded queue of what is sent while disconnected (maxQueueSize);
// - replies matched by `id`: subscribe(), ping() and post() (order entry) return promises;
// - no reconnect after close 1008 (token refused) or 4001 (token expired) unless the token is a
//   provider function that can give a fresh one; with a provider, `auth` refreshes the token
//   before it expires;
// - no reconnect after the WebSocket handshake was refused (HTTP 4xx: an Origin not allowed, a
//   wrong path) maxHandshakeRefusals times in a row: it stops and says why ('handshakeRefused');
// - lossless streams (user_orders, user_fills, user_ledger, trades, rooms) keep their last position
//   (offset, epoch), resubscribe with `since` after every reconnect, drop duplicates and heal
//   gaps; when the gateway cannot replay a break, 'resync' tells the application to reload;
// - subscribes refused for a passing reason (UPSTREAM_UNAVAILABLE, RATE_LIMITED, INTERNAL) are
//   retried with backoff; FORBIDDEN, INVALID_PARAMS, ... are final.
//
//   import { TradingWebSocket } from 'http://127.0.0.1:8080/client.js';
//   const client = new TradingWebSocket('ws://127.0.0.1:8080/ws', token);
//   client.on('data:prices', (prices, params) => console.log(prices));
//   client.subscribeToPrices(['BTC', 'ETH']);
//
// Events: connected, welcome, disconnected, reconnecting, maxReconnectAttemptsReached,
// subscribed, unsubscribed, data, data:<channel>, error, pong, authenticated, authFailed,
// handshakeRefused, recovered, resync, shutdown, room_joined, room_left, post_result, message
// (an unknown type), closed. `data:<channel>` handlers get (data, params, meta) where meta is
// {offset, epoch, position} on lossless streams; `data` handlers get {channel, params, data,
// offset, epoch, position}. Store `position` and pass it back as subscribe(c, p, {since}).

const OPEN = 1;
const TOKEN_EXPIRED = 4001;
const POLICY = 1008;
const TOO_MANY_ERRORS = 'Too many errors';
const SNAPSHOT_CHANNELS = new Set([
  'prices', 'orderbook', 'account_updates', 'bbo', 'asset_context', 'candles',
]);
// Hyperliquid's candle intervals, for the `candles` channel.
export const CANDLE_INTERVALS = Object.freeze([
  '1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '8h', '12h', '1d', '3d', '1w', '1M',
]);
const CANDLES_KEPT = 500;

/**
 * A `candles` series (the data of its first message) with an update folded in: a candle
 * replaces the one that opened at the same time (`t`), or comes after. No I/O.
 */
export function mergeCandles(whole, update) {
  if (!whole || !Array.isArray(whole.candles)) return update;
  const byOpen = new Map(whole.candles.map((c) => [c.t, c]));
  for (const c of update.candles || []) byOpen.set(c.t, c);
  const candles = [...byOpen.keys()].sort((a, b) => a - b).map((t) => byOpen.get(t));
  return { ...update, candles: candles.slice(-CANDLES_KEPT) };
}
// Refusals of a subscribe that may pass: retried with backoff. Any other code is final.
export const TRANSIENT_REFUSALS = Object.freeze(['UPSTREAM_UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL']);
// HTTP answers to the upgrade that a retry may not get again.
const PASSING_HTTP = new Set([408, 429]);

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
  maxHandshakeRefusals: 3, // HTTP 4xx answers to the upgrade in a row before giving up
  // Browsers do not tell why an upgrade failed: a failure before `open` while the gateway
  // answers HTTP (a probe of /health) counts as a refusal too, with more patience (a 429 looks
  // the same there).
  maxUnexplainedRefusals: 10,
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

/** ws://host:port/ws -> http://host:port/health (wss -> https; a path prefix is kept). */
export function healthUrl(wsUrl) {
  return gatewayUrl(wsUrl, '/health');
}

/** The gateway's HTTP URL of `path` (e.g. '/api/markets') for its WebSocket URL. */
export function gatewayUrl(wsUrl, path) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = url.pathname.replace(/\/ws\/?$/, '').replace(/\/$/, '') + path;
  url.search = '';
  return url.toString();
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

/** True when a subscribe refused with `code` may succeed if sent again later. */
export function isTransientRefusal(code) {
  return TRANSIENT_REFUSALS.includes(code);
}

/** The HTTP status of a refused upgrade, when the WebSocket implementation tells it (Node's
 * `ws` says "Unexpected server response: 403"; browsers tell nothing), else null. */
export function handshakeStatus(event) {
  const text = String((event && (event.message || (event.error && event.error.message))) || '');
  const match = /Unexpected server response: (\d{3})/.exec(text);
  return match ? Number(match[1]) : null;
}

/** A refused upgrade that the same request would meet again (4xx but 408 and 429). */
export function isHandshakeRefusal(status) {
  return status !== null && status >= 400 && status < 500 && !PASSING_HTTP.has(status);
}

/**
 * A place in a lossless stream, and the judge of each message (no I/O): the next message
 * (offset last+1, same epoch) is delivered, one seen already is a duplicate, one further
 * ahead means messages are missing ('heal': resubscribe with `since`; the replay brings it),
 * one of a new epoch means history was lost ('newEpoch': deliver, and resync).
 * Verdicts: 'deliver' | 'duplicate' | 'heal' | 'skip' (a heal is under way) | 'newEpoch'.
 * on_joined outcomes: 'untracked' | 'fresh' | 'recovered' | 'resync'.
 */
export class StreamCursor {
  constructor(position = null) {
    this.position = position ? { offset: position.offset, epoch: position.epoch } : null;
    this.healing = false;
    this.duplicates = 0;
    this.gaps = 0;
    this.resyncs = 0;
    this._retired = [];
  }

  since() {
    return this.position;
  }

  onJoined(offset, epoch, recovered) {
    this.healing = false;
    if (epoch === undefined || epoch === null) return 'untracked';
    const head = { offset: offset || 0, epoch };
    const current = this.position;
    if (recovered === true && current && current.epoch === epoch) return 'recovered';
    if (recovered === undefined || recovered === null) {
      if (!current) {
        this.position = head;
        return 'fresh';
      }
      if (current.epoch === epoch) {
        if (head.offset <= current.offset) return 'fresh';
        this.position = head;
        this.resyncs += 1;
        return 'resync';
      }
    }
    this._moveTo(head);
    this.resyncs += 1;
    return 'resync';
  }

  onData(offset, epoch) {
    if (offset === undefined || offset === null || epoch === undefined || epoch === null) {
      return 'deliver';
    }
    const current = this.position;
    if (!current) {
      this.position = { offset, epoch };
      return 'deliver';
    }
    if (epoch !== current.epoch) {
      if (this._retired.includes(epoch)) {
        this.duplicates += 1;
        return 'duplicate';
      }
      this._moveTo({ offset, epoch });
      this.resyncs += 1;
      return 'newEpoch';
    }
    if (offset <= current.offset) {
      this.duplicates += 1;
      return 'duplicate';
    }
    if (offset === current.offset + 1) {
      this.position = { offset, epoch };
      return 'deliver';
    }
    if (this.healing) return 'skip';
    this.healing = true;
    this.gaps += 1;
    return 'heal';
  }

  disconnected() {
    this.healing = false;
  }

  _moveTo(position) {
    const old = this.position;
    if (old && old.epoch !== position.epoch) {
      this._retired.push(old.epoch);
      if (this._retired.length > 4) this._retired.shift();
    }
    this.position = position;
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
    this._retryTimers = new Set(); // passing refusals of a subscribe, retried later
    this.handshakeRefusals = 0; // upgrades refused in a row
    this._opened = false;
    this._handshakeStatus = null;

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
    this._opened = false;
    this._handshakeStatus = null;
    ws.onopen = (event) => { if (this.ws === ws) { this._opened = true; this.handleOpen(event); } };
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
    this.handshakeRefusals = 0;
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
          const target = this._confirm(pending.entry, params);
          if (target) this._joined(target, message);
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
      case 'post_result':
        if (pending) pending.resolve(message);
        this.emit('post_result', message);
        break;
      default:
        if (pending) pending.resolve(message);
        this.emit('message', message);
    }
  }

  handleDataMessage(message) {
    const { channel, params, data, offset, epoch } = message;
    const key = this.createSubscriptionKey(channel, params);
    const entry = this.subscriptions.get(key);
    if (SNAPSHOT_CHANNELS.has(channel) && entry) {
      // A candles update holds the current candle: what a late joiner needs is the series.
      const latest = this._latest.get(key);
      const kept = channel === 'candles' && latest
        ? { ...message, data: mergeCandles(latest.data, data) }
        : message;
      this._latest.set(key, kept);
    }
    const meta = {};
    if (offset !== undefined && epoch !== undefined) {
      Object.assign(meta, { offset, epoch, position: { offset, epoch } });
    }
    if (entry) {
      const previous = entry.cursor.position;
      const verdict = entry.cursor.onData(offset, epoch);
      if (verdict === 'duplicate' || verdict === 'skip') return;
      if (verdict === 'heal') {
        this._heal(entry);
        return;
      }
      if (verdict === 'newEpoch') {
        this._resync(entry, 'epoch changed', previous, { offset: offset - 1, epoch });
      }
    }
    // Emit specific channel event
    this.emit(`data:${channel}`, data, params, meta);
    // Emit generic data event
    this.emit('data', { channel, params, data, ...meta });
  }

  _joined(entry, message) {
    const previous = entry.cursor.position;
    const outcome = entry.cursor.onJoined(message.offset, message.epoch, message.recovered);
    if (outcome === 'recovered') {
      this.emit('recovered', {
        channel: entry.channel,
        params: entry.params,
        since: previous,
        head: { offset: message.offset || 0, epoch: message.epoch },
      });
    } else if (outcome === 'resync') {
      const reason = message.recovered === false ? 'not recovered' : 'epoch changed';
      this._resync(entry, reason, previous, entry.cursor.position);
    }
  }

  /** The stream could not be resumed where it stopped: the application must reload. */
  _resync(entry, reason, previous, position) {
    this.log('warn', `${entry.channel} resync: ${reason}`);
    this.emit('resync', { channel: entry.channel, params: entry.params, reason, previous, position });
  }

  /** Messages are missing in a live stream: subscribe again with `since` on the same link;
   * the gateway keeps the subscription and replays what is missing. */
  _heal(entry) {
    if (!this.isConnected || !this.ws || this.ws.readyState !== OPEN || entry.inFlight) {
      entry.cursor.healing = entry.inFlight;
      return;
    }
    this._sendSubscribe(entry);
  }

  handleClose(event) {
    const wasConnected = this.isConnected;
    const opened = this._opened;
    this.isConnected = false;
    this.ws = null;
    this._clearRefresh();
    this._clearRetries();
    for (const [id, pending] of this._pending) {
      if (!pending.entry) pending.reject(new Error(`Connection lost before the reply to ${pending.kind}`));
      this._pending.delete(id);
    }
    for (const entry of this.subscriptions.values()) {
      entry.inFlight = false;
      entry.cursor.disconnected();
    }
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
    if (!opened && !wasConnected) {
      const status = this._handshakeStatus;
      if (status !== null) {
        if (this._refused(status, this.options.maxHandshakeRefusals)) return;
      } else if (typeof globalThis.fetch === 'function') {
        this._probe();
        return;
      }
    } else {
      this.handshakeRefusals = 0;
    }
    this.scheduleReconnect();
  }

  /** A refused upgrade: true when that was one too many (the client stopped). */
  _refused(status, limit) {
    if (status !== 'unexplained' && !isHandshakeRefusal(status)) {
      this.handshakeRefusals = 0;
      return false;
    }
    this.handshakeRefusals += 1;
    if (this.handshakeRefusals < limit) return false;
    const why = status === 'unexplained'
      ? 'the gateway answers HTTP but refused the WebSocket upgrade'
      : `the gateway answered the WebSocket upgrade with HTTP ${status}`;
    const message = `${why} ${this.handshakeRefusals} times in a row (an Origin it does not `
      + 'allow, or a wrong path?); not retrying';
    this.log('error', message);
    this._stop('handshakeRefused', { status: status === 'unexplained' ? null : status, message });
    return true;
  }

  /** A failure before `open` with no reason given (browsers): is the gateway up at all? */
  _probe() {
    const attempt = this.reconnectAttempts;
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = setTimeout(() => controller && controller.abort(), 5000);
    globalThis.fetch(healthUrl(this.url), { mode: 'no-cors', cache: 'no-store', signal: controller && controller.signal })
      .then(() => true, () => false)
      .then((reachable) => {
        clearTimeout(timer);
        if (this.closedByUser || this.stopped || this.ws || attempt !== this.reconnectAttempts) return;
        if (reachable && this._refused('unexplained', this.options.maxUnexplainedRefusals)) return;
        if (!reachable) this.handshakeRefusals = 0;
        this.scheduleReconnect();
      });
  }

  handleError(error) {
    const status = handshakeStatus(error);
    if (status !== null) this._handshakeStatus = status;
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
    this._clearRetries();
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
    const since = entry.cursor.since();
    if (since) message.since = { offset: since.offset, epoch: since.epoch };
    this._write({ message, pending: { kind: 'subscribe', entry, resolve() {}, reject() {} } });
  }

  _retryLater(entry, delay) {
    const ws = this.ws;
    const timer = setTimeout(() => {
      this._retryTimers.delete(timer);
      if (this.ws !== ws || !this.isConnected || entry.inFlight) return;
      if (this.subscriptions.get(entry.key) !== entry) return;
      this._sendSubscribe(entry);
    }, delay);
    this._retryTimers.add(timer);
  }

  _clearRetries() {
    for (const timer of this._retryTimers) clearTimeout(timer);
    this._retryTimers.clear();
  }

  _sendUnsubscribe(entry) {
    if (!this.isConnected || !this.ws || this.ws.readyState !== OPEN) return Promise.resolve();
    const message = entry.channel === 'room'
      ? { type: 'leave_room', room: entry.params.room }
      : { type: 'unsubscribe', channel: entry.channel, params: entry.params };
    return this._request(message, 'unsubscribe').catch(() => {});
  }

  // -- subscriptions ----------------------------------------------------------------------
  /**
   * Subscribe; restored after every reconnect. `options.since` ({offset, epoch}, a position
   * stored from an earlier run) asks the gateway to replay every message after it (else the
   * 'resync' event fires). It applies to a subscription this client does not hold yet.
   */
  subscribe(channel, params = {}, options = {}) {
    const key = this.createSubscriptionKey(channel, params);
    let entry = this.subscriptions.get(key);
    const promise = handled(new Promise((resolve, reject) => {
      if (entry && entry.confirmed) {
        resolve({ channel: entry.channel, params: entry.params });
        return;
      }
      if (!entry) {
        entry = {
          channel,
          params: normalizeParams(params),
          key,
          confirmed: false,
          inFlight: false,
          waiters: [],
          cursor: new StreamCursor(options.since || null),
          refusals: 0,
        };
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

  /** Returns the entry that holds the subscription now, or null for an orphan. */
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
      return null;
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
    target.refusals = 0;
    this._settle(target, (w) => w.resolve({ channel: target.channel, params: target.params }));
    return target;
  }

  _handleErrorReply(message, pending) {
    if (pending && pending.entry) {
      const entry = pending.entry;
      entry.inFlight = false;
      const held = this.subscriptions.get(entry.key) === entry;
      if (held && isTransientRefusal(message.code)) {
        entry.refusals += 1;
        if (entry.refusals <= this.maxReconnectAttempts) {
          const delay = backoffDelay(entry.refusals, this.options);
          this.log('warn', `${entry.channel} refused (${message.code}): again in ${Math.round(delay)} ms`);
          this._retryLater(entry, delay);
          this.emit('error', message);
          return;
        }
      }
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

  /**
   * Relay a signed Hyperliquid /exchange body (docs/trading.md). Resolves to the gateway's
   * post_result, {status: 'ok'|'err', response}: Hyperliquid's answer as it came. A refusal
   * (FORBIDDEN, INVALID_PARAMS, RATE_LIMITED) rejects with RequestFailedError: nothing was sent.
   * A connection lost before the answer rejects too: the action's fate is then unknown, so look
   * the order up by its cloid before sending it again. Keys go out in the order given.
   */
  post(request) {
    return this._request({ type: 'post', request }, 'post');
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
    this._clearRetries();
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

  // The last 500 candles first, then each update of the current one (mergeCandles folds them).
  subscribeToCandles(symbol, interval = '1m') {
    return this.subscribe('candles', { symbol, interval });
  }

  subscribeToBbo(symbol) {
    return this.subscribe('bbo', { symbol });
  }

  subscribeToAssetContext(symbol) {
    return this.subscribe('asset_context', { symbol });
  }

  // Deposits, withdrawals, transfers, liquidations and funding payments, each once.
  subscribeToUserLedger(userId, wallet) {
    return this.subscribe('user_ledger', { userId, wallet });
  }

  // Every market (`GET /api/markets`): [{symbol, kind, dex, szDecimals, maxLeverage, aliases}].
  async fetchMarkets() {
    const resp = await globalThis.fetch(gatewayUrl(this.url, '/api/markets'));
    if (!resp.ok) throw new Error(`markets: HTTP ${resp.status}`);
    return (await resp.json()).markets;
  }

  joinRoom(room) {
    return this.subscribe('room', { room });
  }

  leaveRoom(room) {
    return this.unsubscribe('room', { room });
  }
}

export default TradingWebSocket;
