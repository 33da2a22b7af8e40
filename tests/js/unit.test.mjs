// Unit tests of the JavaScript client's sans-I/O parts and of TradingWebSocket over a fake
// transport (no sockets): positions, duplicates, gaps, recovery answers, passing refusals,
// handshake refusals. Run: node --test tests/js/unit.test.mjs (tests/client/test_js_unit.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const source = readFileSync(new URL('../../src/hlgateway/static/client.js', import.meta.url));
const {
  StreamCursor, TradingWebSocket, isTransientRefusal, isHandshakeRefusal, handshakeStatus, healthUrl,
  gatewayUrl, mergeCandles, CANDLE_INTERVALS,
} = await import('data:text/javascript;base64,' + source.toString('base64'));

// -- the cursor ----------------------------------------------------------------------------

test('fresh join, next, duplicates', () => {
  const c = new StreamCursor();
  assert.equal(c.onJoined(41, 'E', undefined), 'fresh');
  assert.deepEqual(c.since(), { offset: 41, epoch: 'E' });
  assert.deepEqual([42, 42, 41, 43].map((n) => c.onData(n, 'E')), ['deliver', 'duplicate', 'duplicate', 'deliver']);
  assert.equal(c.duplicates, 2);
});

test('a gap asks for one heal; recovered keeps the position until the replay arrives', () => {
  const c = new StreamCursor({ offset: 5, epoch: 'E' });
  assert.equal(c.onData(7, 'E'), 'heal');
  assert.equal(c.onData(8, 'E'), 'skip');
  assert.equal(c.onJoined(8, 'E', true), 'recovered');
  assert.deepEqual(c.since(), { offset: 5, epoch: 'E' });
  assert.deepEqual([6, 7, 8, 8, 9].map((n) => c.onData(n, 'E')), ['deliver', 'deliver', 'deliver', 'duplicate', 'deliver']);
});

test('not recovered and new epochs resync; the old epoch is behind', () => {
  const c = new StreamCursor({ offset: 5, epoch: 'OLD' });
  assert.equal(c.onJoined(100, 'NEW', false), 'resync');
  assert.deepEqual(c.since(), { offset: 100, epoch: 'NEW' });
  assert.equal(c.onData(6, 'OLD'), 'duplicate');
  assert.equal(c.onData(1, 'NEWER'), 'newEpoch');
  assert.equal(c.onJoined(null, null, undefined), 'untracked');
});

test('candles: updates fold into the series; the market list URL', () => {
  const whole = { symbol: 'HYPE/USDC', interval: '1m', candles: [{ t: 1, close: 1 }, { t: 2, close: 2 }] };
  const merged = mergeCandles(whole, { symbol: 'HYPE/USDC', interval: '1m', candles: [{ t: 2, close: 3 }] });
  assert.deepEqual(merged.candles, [{ t: 1, close: 1 }, { t: 2, close: 3 }]);
  const next = mergeCandles(merged, { symbol: 'HYPE/USDC', interval: '1m', candles: [{ t: 3, close: 4 }] });
  assert.deepEqual(next.candles.map((c) => c.t), [1, 2, 3]);
  const long = { candles: Array.from({ length: 500 }, (_, i) => ({ t: i })) };
  assert.equal(mergeCandles(long, { candles: [{ t: 500 }] }).candles[0].t, 1);
  assert.deepEqual(mergeCandles(null, whole), whole);
  assert.equal(CANDLE_INTERVALS.length, 14);
  assert.equal(gatewayUrl('wss://gw.example/ws?token=x', '/api/markets'), 'https://gw.example/api/markets');
});

test('refusal classes and handshake statuses', () => {
  assert.deepEqual(['UPSTREAM_UNAVAILABLE', 'RATE_LIMITED', 'INTERNAL'].map(isTransientRefusal), [true, true, true]);
  assert.deepEqual(['FORBIDDEN', 'INVALID_PARAMS', 'UNKNOWN_CHANNEL', 'TOO_MANY_SUBSCRIPTIONS', 'NEW'].map(isTransientRefusal), [false, false, false, false, false]);
  assert.equal(handshakeStatus({ message: 'Unexpected server response: 403' }), 403);
  assert.equal(handshakeStatus({ error: new Error('Unexpected server response: 429') }), 429);
  assert.equal(handshakeStatus({ message: 'connect ECONNREFUSED 127.0.0.1:1' }), null);
  assert.deepEqual([403, 404, 429, 408, 503, null].map(isHandshakeRefusal), [true, true, false, false, false, false]);
  assert.equal(healthUrl('wss://gw.example/api/ws'), 'https://gw.example/api/health');
  assert.equal(healthUrl('ws://127.0.0.1:8080/ws?x=1'), 'http://127.0.0.1:8080/health');
});

// -- the client over a fake transport --------------------------------------------------------

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000, reason = '') { this.drop(code, reason); }
  // test side
  open() { this.readyState = 1; this.onopen({}); }
  receive(message) { this.onmessage({ data: JSON.stringify({ timestamp: 1, ...message }) }); }
  drop(code, reason = '') { this.readyState = 3; this.onclose({ code, reason }); }
  fail(message) { this.onerror({ message }); this.readyState = 3; this.onclose({ code: 1006, reason: '' }); }
  lastOf(type) { return [...this.sent].reverse().find((m) => m.type === type); }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
async function until(check) {
  for (let i = 0; i < 400; i += 1) {
    if (check()) return;
    await tick();
  }
  throw new Error('timed out');
}

function client(options = {}) {
  FakeSocket.made = [];
  const events = [];
  const c = new TradingWebSocket('ws://gw.test/ws', 'tok', {
    WebSocket: FakeSocket, reconnectInterval: 1, maxReconnectInterval: 2, jitter: 0, ...options,
  });
  for (const name of ['data', 'resync', 'recovered', 'handshakeRefused', 'closed', 'error', 'unsubscribed']) {
    c.on(name, (arg) => events.push([name, arg]));
  }
  return { c, events, of: (name) => events.filter(([n]) => n === name).map(([, a]) => a) };
}

async function up(c, count = 1) {
  await until(() => FakeSocket.made.length === count && FakeSocket.made.at(-1).onopen);
  const ws = FakeSocket.made.at(-1);
  ws.open();
  ws.receive({ type: 'welcome', clientId: 'c', user: { id: 'alice' } });
  return ws;
}

const fill = (offset, epoch = 'E') => ({
  type: 'data', channel: 'user_fills', params: { userId: 'alice' }, data: { fills: [{ id: offset }] }, offset, epoch,
});

test('dedupe, heal a gap with since, resync on recovered:false after a reconnect', async () => {
  const { c, of } = client();
  let ws = await up(c);
  c.subscribe('user_fills', { userId: 'alice' });
  const sub = ws.lastOf('subscribe');
  assert.equal(sub.since, undefined);
  ws.receive({ type: 'subscribed', id: sub.id, channel: 'user_fills', params: { userId: 'alice' }, offset: 5, epoch: 'E' });
  for (const n of [6, 7, 7, 6]) ws.receive(fill(n));
  assert.deepEqual(of('data').map((d) => d.offset), [6, 7]);
  assert.deepEqual(of('data')[0].position, { offset: 6, epoch: 'E' });

  ws.receive(fill(9)); // 8 is missing
  const heal = ws.sent.at(-1);
  assert.equal(heal.type, 'subscribe');
  assert.deepEqual(heal.since, { offset: 7, epoch: 'E' });
  ws.receive(fill(10)); // queued before the heal: skipped, the replay brings it
  ws.receive({ type: 'subscribed', id: heal.id, channel: 'user_fills', params: { userId: 'alice' }, offset: 10, epoch: 'E', recovered: true });
  for (const n of [8, 9, 10, 11]) ws.receive(fill(n));
  assert.deepEqual(of('data').map((d) => d.offset), [6, 7, 8, 9, 10, 11]);
  assert.equal(of('recovered').length, 1);

  ws.drop(4008, 'Slow consumer');
  ws = await up(c, 2);
  const again = ws.lastOf('subscribe');
  assert.deepEqual(again.since, { offset: 11, epoch: 'E' });
  ws.receive({ type: 'subscribed', id: again.id, channel: 'user_fills', params: { userId: 'alice' }, offset: 3, epoch: 'E2', recovered: false });
  assert.deepEqual(of('resync'), [{
    channel: 'user_fills', params: { userId: 'alice' }, reason: 'not recovered',
    previous: { offset: 11, epoch: 'E' }, position: { offset: 3, epoch: 'E2' },
  }]);
  ws.receive(fill(4, 'E2'));
  assert.deepEqual(of('data').at(-1).position, { offset: 4, epoch: 'E2' });
  c.close();
});

test('a stored position seeds the first subscribe', async () => {
  const { c } = client();
  const ws = await up(c);
  c.subscribe('room', { room: 'desk' }, { since: { offset: 12, epoch: 'R' } });
  assert.deepEqual(ws.lastOf('join_room'), { type: 'join_room', room: 'desk', since: { offset: 12, epoch: 'R' }, id: ws.lastOf('join_room').id });
  c.close();
});

test('passing refusals are retried, final ones are not', async () => {
  const { c } = client();
  const ws = await up(c);
  const result = c.subscribe('trades', { symbol: 'BTC' });
  let sub = ws.lastOf('subscribe');
  ws.receive({ type: 'error', id: sub.id, code: 'UPSTREAM_UNAVAILABLE', message: 'market list not loaded yet' });
  await until(() => ws.lastOf('subscribe').id !== sub.id);
  sub = ws.lastOf('subscribe');
  ws.receive({ type: 'subscribed', id: sub.id, channel: 'trades', params: { symbol: 'BTC' }, offset: 0, epoch: 'T' });
  assert.deepEqual(await result, { channel: 'trades', params: { symbol: 'BTC' } });

  const refused = c.subscribe('user_fills', { userId: 'bob' });
  const bad = ws.lastOf('subscribe');
  ws.receive({ type: 'error', id: bad.id, code: 'FORBIDDEN', message: 'no' });
  await assert.rejects(refused, { name: 'SubscriptionRefusedError', code: 'FORBIDDEN' });
  assert.equal(c.subscriptions.size, 1);
  c.close();
});

test('repeated handshake refusals stop the client and say why', async () => {
  const { c, of } = client({ maxHandshakeRefusals: 3 });
  for (let n = 1; n <= 3; n += 1) {
    await until(() => FakeSocket.made.length === n);
    FakeSocket.made.at(-1).fail('Unexpected server response: 403');
  }
  assert.equal(of('handshakeRefused').length, 1);
  assert.equal(of('handshakeRefused')[0].status, 403);
  assert.match(of('handshakeRefused')[0].message, /HTTP 403 3 times in a row/);
  assert.equal(c.stopped, true);
  assert.equal(FakeSocket.made.length, 3); // and no timer is left: node:test would hang
});

test('a 429 between refusals restarts the count', async () => {
  const { c } = client({ maxHandshakeRefusals: 2 });
  const statuses = [403, 429, 403];
  for (let n = 1; n <= statuses.length; n += 1) {
    await until(() => FakeSocket.made.length === n);
    FakeSocket.made.at(-1).fail(`Unexpected server response: ${statuses[n - 1]}`);
  }
  assert.equal(c.stopped, false);
  assert.equal(c.handshakeRefusals, 1);
  c.close();
});

test('browsers: a failure before open while the gateway answers HTTP counts as a refusal', async () => {
  const realFetch = globalThis.fetch;
  const probed = [];
  let reachable = true;
  globalThis.fetch = (url) => {
    probed.push(url);
    return reachable ? Promise.resolve({ type: 'opaque' }) : Promise.reject(new TypeError('down'));
  };
  try {
    const { c, of } = client({ maxUnexplainedRefusals: 3 });
    const failOnce = async (n) => {
      await until(() => FakeSocket.made.length === n);
      FakeSocket.made.at(-1).fail(''); // a browser says nothing about why
    };
    await failOnce(1);
    await until(() => probed.length === 1);
    reachable = false; // the gateway is down: not a refusal, the count starts again
    await failOnce(2);
    await until(() => probed.length === 2);
    reachable = true;
    for (let n = 3; n <= 5; n += 1) await failOnce(n);
    await until(() => of('handshakeRefused').length === 1);
    assert.equal(probed[0], 'http://gw.test/health');
    assert.equal(of('handshakeRefused')[0].status, null);
    assert.match(of('handshakeRefused')[0].message, /answers HTTP but refused the WebSocket upgrade 3 times/);
    assert.equal(c.stopped, true);
  } finally {
    globalThis.fetch = realFetch;
  }
});
