// Drives the gateway's own JavaScript client (GET /client.js) under Node with the `ws` package.
//
//   node client_driver.mjs <http base> <ws url> <options JSON>
//
// options: {token} a fixed token, or {secret, user, wallets, ttl, badFirst} to mint tokens here
// (HS256) through a token provider; {origin} an Origin header; {client} client options
// (reconnectInterval, maxQueueSize, ...).
// Commands arrive on stdin, one JSON object a line: {op: subscribe|unsubscribe|ping|send|close, ...}.
// Everything observed is printed as lines `EVENT {json}` for the Python test to read.
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

const [httpBase, wsUrl, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson || '{}');
const report = (event, extra = {}) =>
  process.stdout.write('EVENT ' + JSON.stringify({ event, ...extra }) + '\n');

// The module as the gateway serves it, imported from a data: URL (no files written).
const response = await fetch(`${httpBase}/client.js`);
report('module', { status: response.status, contentType: response.headers.get('content-type') });
const source = await response.text();
const mod = await import('data:text/javascript;base64,' + Buffer.from(source).toString('base64'));
const { TradingWebSocket, SubscriptionRefusedError } = mod;

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
function mint(ttl) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { id: options.user, username: options.user, iat: now, exp: now + ttl };
  if (options.wallets) claims.wallets = options.wallets;
  const head = b64url({ alg: 'HS256', typ: 'JWT' }) + '.' + b64url(claims);
  return head + '.' + createHmac('sha256', options.secret).update(head).digest('base64url');
}

let minted = 0;
const token = options.token !== undefined ? options.token : () => {
  minted += 1;
  report('token', { minted });
  return minted === 1 && options.badFirst ? 'not-a-valid-token' : mint(options.ttl || 600);
};

// {origin}: the upgrade carries this Origin header, as a browser page on that site would.
const Impl = options.origin === undefined ? WebSocket : class extends WebSocket {
  constructor(url, protocols) { super(url, protocols, { origin: options.origin }); }
};
const clientOptions = { WebSocket: Impl, ...(options.client || {}) };
const client = new TradingWebSocket(wsUrl, token, clientOptions);

client.on('welcome', (m) => report('welcome', { user: m.user }));
client.on('connected', () => report('connected', { connects: client.connects }));
client.on('disconnected', (e) => report('disconnected', { code: e.code, reason: String(e.reason || '') }));
client.on('reconnecting', (r) => report('reconnecting', r));
client.on('maxReconnectAttemptsReached', () => report('maxReconnectAttemptsReached'));
client.on('authFailed', (e) => report('authFailed', { code: e.code }));
client.on('subscribed', (m) => report('subscribed', { channel: m.channel, params: m.params, recovered: m.recovered }));
client.on('unsubscribed', (m) => report('unsubscribed', { channel: m.channel, params: m.params }));
client.on('authenticated', (m) => report('authenticated', { expiresAt: m.expiresAt }));
client.on('pong', () => report('pong'));
client.on('error', (m) => report('error', { code: m && m.code, name: m && m.name }));
client.on('data', ({ channel, params, data, offset, epoch }) => report('data', { channel, params, data, offset, epoch }));
client.on('resync', (r) => report('resync', r));
client.on('recovered', (r) => report('recovered', r));
client.on('handshakeRefused', (r) => report('handshakeRefused', r));
client.on('closed', (r) => report('closed', { reason: r && r.reason }));

const results = (op, promise) => promise.then(
  (value) => report('result', { op, ok: true, value }),
  (error) => report('result', {
    op,
    ok: false,
    name: error.name,
    code: error.code,
    refused: error instanceof SubscriptionRefusedError,
  }),
);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const cmd = JSON.parse(line);
  try {
    switch (cmd.op) {
      case 'subscribe': results('subscribe', client.subscribe(cmd.channel, cmd.params || {}, { since: cmd.since })); break;
      case 'unsubscribe': results('unsubscribe', client.unsubscribe(cmd.channel, cmd.params || {})); break;
      case 'ping': results('ping', client.ping()); break;
      case 'post': results('post', client.post(cmd.request)); break;
      case 'send': client.send(cmd.message); report('result', { op: 'send', ok: true }); break;
      case 'keys': report('keys', { keys: [...client.subscriptions.keys()] }); break;
      case 'close': client.close(); report('result', { op: 'close', ok: true }); break;
      default: report('result', { op: cmd.op, ok: false, name: 'UnknownOp' });
    }
  } catch (error) {
    report('result', { op: cmd.op, ok: false, name: error.name, message: error.message });
  }
});
lines.on('close', () => { client.close(); setTimeout(() => process.exit(0), 50); });
report('ready');
