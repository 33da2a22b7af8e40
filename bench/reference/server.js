// The benchmark's reference: the seed design's Node `ws` server, fan-out as the seed does it.
//
// Written from /work/shared/seed/websocket-documentation.md ("Basic WebSocket Server with ws
// Library", "Message Compression", "Hyperliquid WebSocket Subscription Manager"):
//   - a `ws` server on /ws; verifyClient checks the JWT in ?token= with jsonwebtoken;
//   - per client: a welcome message, subscribe/unsubscribe/ping handling, the 30 s heartbeat;
//   - one upstream `ws` connection to the Hyperliquid(-compatible) upstream, subscribed to
//     l2Book for the coin; each upstream message becomes one `broadcast(channel, params, data)`,
//     which builds the message object once and, in `sendMessage`, JSON.stringify's it and
//     ws.send's it per client;
//   - with --compress, `perMessageDeflate` exactly as the seed's "Message Compression" section
//     (ws' defaults otherwise: notably threshold 1024, below which messages are sent as is).
// The data message has the gateway's shape:
//   {"type":"data","channel":"orderbook","params":{"depth":D,"symbol":S},
//    "data":{"symbol":S,"bids":[[px,sz]..],"asks":[[px,sz]..],"timestamp":<l2Book time>},
//    "timestamp":Date.now()}
// Not from the seed: logging is off (the seed's logger.info per connection would only slow it
// down), upstream reconnects are a plain 1 s retry, and `--cluster N` runs N copies of the
// server behind Node's own `cluster` module (the primary accepts and hands each connection to
// a worker in turn; each worker has its own upstream connection): only for more connections
// than one process may hold open files (RLIMIT_NOFILE), the seed having no answer for that.
//
// Usage: node server.js --port 0 --upstream ws://127.0.0.1:PORT/ws [--coin BTC] [--depth 1]
//        [--compress] [--cluster N]   (JWT_SECRET from the environment)
// Prints {"event":"ready","port":P} on stdout once listening and subscribed upstream (with
// --cluster: once every worker is).
'use strict';

const cluster = require('cluster');
const http = require('http');
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');

function parseArgs(argv) {
  const args = { port: 0, host: '127.0.0.1', upstream: null, coin: 'BTC', depth: 1, compress: false, cluster: 1 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--compress') args.compress = true;
    else if (a === '--port') args.port = Number(argv[++i]);
    else if (a === '--host') args.host = argv[++i];
    else if (a === '--upstream') args.upstream = argv[++i];
    else if (a === '--coin') args.coin = argv[++i];
    else if (a === '--depth') args.depth = Number(argv[++i]);
    else if (a === '--cluster') args.cluster = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.upstream) throw new Error('--upstream is required');
  return args;
}

const logger = { info() {}, debug() {}, warn() {}, error: (...a) => console.error(...a) };

class WebSocketServer {
  constructor(server, options) {
    const serverOptions = {
      server,
      path: '/ws',
      verifyClient: this.verifyClient.bind(this),
    };
    if (options.compress) {
      // The seed's "Message Compression" section, verbatim.
      serverOptions.perMessageDeflate = {
        zlibDeflateOptions: {
          level: 6,
          concurrencyLevel: 10,
          windowBits: 13,
          memLevel: 7,
        },
      };
    } else {
      serverOptions.perMessageDeflate = false;
    }
    this.wss = new WebSocket.Server(serverOptions);
    this.clients = new Map();
    this.subscriptions = new Map();
    this.rooms = new Map();
    this.nextId = 0;
    this.setupServer();
  }

  verifyClient(info) {
    try {
      const url = new URL(info.req.url, 'http://localhost');
      const token = url.searchParams.get('token');
      if (!token) {
        logger.warn('WebSocket connection rejected: No token provided');
        return false;
      }
      const decoded = jwt.verify(token, process.env.JWT_SECRET);
      info.req.user = decoded;
      return true;
    } catch (error) {
      logger.warn('WebSocket connection rejected: Invalid token');
      return false;
    }
  }

  setupServer() {
    this.wss.on('connection', (ws, req) => {
      const clientId = this.generateClientId();
      const user = req.user;
      const client = {
        id: clientId,
        ws,
        user,
        subscriptions: new Set(),
        lastPing: Date.now(),
        authenticated: true,
      };
      this.clients.set(clientId, client);
      logger.info('WebSocket client connected', { clientId, userId: user.id });

      this.sendMessage(clientId, {
        type: 'welcome',
        clientId,
        user: { id: user.id, username: user.username },
        timestamp: Date.now(),
      });

      ws.on('message', (data) => this.handleMessage(clientId, data));
      ws.on('close', () => this.handleDisconnect(clientId));
      ws.on('error', (error) => this.handleError(clientId, error));
      ws.on('pong', () => this.handlePong(clientId));
    });

    this.heartbeatInterval = setInterval(() => {
      this.performHeartbeat();
    }, 30000);
  }

  handleMessage(clientId, data) {
    try {
      const message = JSON.parse(data);
      const client = this.clients.get(clientId);
      if (!client) return;
      switch (message.type) {
        case 'subscribe':
          this.handleSubscribe(clientId, message);
          break;
        case 'unsubscribe':
          this.handleUnsubscribe(clientId, message);
          break;
        case 'ping':
          this.sendMessage(clientId, { type: 'pong', timestamp: Date.now() });
          break;
        default:
          logger.warn('Unknown message type', { type: message.type, clientId });
      }
    } catch (error) {
      this.sendMessage(clientId, {
        type: 'error',
        message: 'Invalid message format',
        timestamp: Date.now(),
      });
    }
  }

  handleSubscribe(clientId, message) {
    const { channel, params = {} } = message;
    const client = this.clients.get(clientId);
    if (!client) return;
    if (!this.isValidSubscription(channel, params, client.user)) {
      this.sendMessage(clientId, {
        type: 'error',
        message: 'Invalid subscription or insufficient permissions',
        channel,
        timestamp: Date.now(),
      });
      return;
    }
    const subscriptionKey = this.createSubscriptionKey(channel, params);
    client.subscriptions.add(subscriptionKey);
    if (!this.subscriptions.has(subscriptionKey)) {
      this.subscriptions.set(subscriptionKey, new Set());
    }
    this.subscriptions.get(subscriptionKey).add(clientId);
    this.sendMessage(clientId, { type: 'subscribed', channel, params, timestamp: Date.now() });
  }

  handleUnsubscribe(clientId, message) {
    const { channel, params = {} } = message;
    const client = this.clients.get(clientId);
    if (!client) return;
    const subscriptionKey = this.createSubscriptionKey(channel, params);
    client.subscriptions.delete(subscriptionKey);
    if (this.subscriptions.has(subscriptionKey)) {
      this.subscriptions.get(subscriptionKey).delete(clientId);
      if (this.subscriptions.get(subscriptionKey).size === 0) {
        this.subscriptions.delete(subscriptionKey);
      }
    }
    this.sendMessage(clientId, { type: 'unsubscribed', channel, params, timestamp: Date.now() });
  }

  isValidSubscription(channel, params, user) {
    const validChannels = ['prices', 'orderbook', 'trades', 'user_orders', 'user_fills', 'account_updates'];
    if (!validChannels.includes(channel)) return false;
    if (channel.startsWith('user_') || channel === 'account_updates') {
      return params.userId === user.id || user.role === 'admin';
    }
    return true;
  }

  createSubscriptionKey(channel, params) {
    return `${channel}:${JSON.stringify(params)}`;
  }

  broadcast(channel, params, data) {
    const subscriptionKey = this.createSubscriptionKey(channel, params);
    const subscribers = this.subscriptions.get(subscriptionKey);
    if (!subscribers) return;
    const message = { type: 'data', channel, params, data, timestamp: Date.now() };
    subscribers.forEach((clientId) => {
      this.sendMessage(clientId, message);
    });
  }

  sendMessage(clientId, message) {
    const client = this.clients.get(clientId);
    if (client && client.ws.readyState === WebSocket.OPEN) {
      client.ws.send(JSON.stringify(message));
    }
  }

  performHeartbeat() {
    this.clients.forEach((client, clientId) => {
      if (Date.now() - client.lastPing > 60000) {
        client.ws.terminate();
        this.handleDisconnect(clientId);
      } else if (client.ws.readyState === WebSocket.OPEN) {
        client.ws.ping();
      }
    });
  }

  handlePong(clientId) {
    const client = this.clients.get(clientId);
    if (client) client.lastPing = Date.now();
  }

  handleDisconnect(clientId) {
    const client = this.clients.get(clientId);
    if (!client) return;
    client.subscriptions.forEach((subscriptionKey) => {
      const subscribers = this.subscriptions.get(subscriptionKey);
      if (subscribers) {
        subscribers.delete(clientId);
        if (subscribers.size === 0) this.subscriptions.delete(subscriptionKey);
      }
    });
    this.clients.delete(clientId);
  }

  handleError(clientId, error) {
    logger.error('WebSocket client error', { clientId, error: error.message });
  }

  generateClientId() {
    return Math.random().toString(36).substring(2) + Date.now().toString(36);
  }
}

// The upstream side: one connection, l2Book for the coin, each book broadcast to `orderbook`.
class HyperliquidFeed {
  constructor(url, coin, depth, wsServer, onReady) {
    this.url = url;
    this.coin = coin;
    this.depth = depth;
    this.wsServer = wsServer;
    this.onReady = onReady;
    this.connect();
  }

  connect() {
    const upstream = new WebSocket(this.url, { perMessageDeflate: false });
    upstream.on('open', () => {
      upstream.send(JSON.stringify({ method: 'subscribe', subscription: { type: 'l2Book', coin: this.coin } }));
    });
    upstream.on('message', (raw) => {
      const msg = JSON.parse(raw);
      if (msg.channel === 'subscriptionResponse') {
        if (this.onReady) {
          this.onReady();
          this.onReady = null;
        }
        return;
      }
      if (msg.channel !== 'l2Book') return;
      const book = msg.data;
      const side = (levels) => levels.slice(0, this.depth).map((l) => [parseFloat(l.px), parseFloat(l.sz)]);
      const data = {
        symbol: book.coin,
        bids: side(book.levels[0]),
        asks: side(book.levels[1]),
        timestamp: book.time,
      };
      // The gateway's canonical params (keys sorted): clients subscribe with exactly these.
      this.wsServer.broadcast('orderbook', { depth: this.depth, symbol: this.coin }, data);
    });
    upstream.on('close', () => setTimeout(() => this.connect(), 1000));
    upstream.on('error', (err) => logger.error('upstream error', err.message));
    this.upstream = upstream;
  }
}

function primary(args) {
  // Round-robin hand-off by the primary (Node's default on Linux); a fixed port is needed.
  if (!args.port) throw new Error('--cluster needs a fixed --port');
  let ready = 0;
  for (let i = 0; i < args.cluster; i++) {
    const worker = cluster.fork();
    worker.on('message', (msg) => {
      if (msg === 'ready' && ++ready === args.cluster) {
        process.stdout.write(`${JSON.stringify({ event: 'ready', port: args.port, workers: args.cluster })}\n`);
      }
    });
  }
  cluster.on('exit', (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited (${code ?? signal})`);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function main() {
  const args = parseArgs(process.argv);
  if (!process.env.JWT_SECRET) throw new Error('JWT_SECRET is required');
  if (args.cluster > 1 && cluster.isPrimary) {
    primary(args);
    return;
  }
  const server = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
  });
  const wsServer = new WebSocketServer(server, args);
  server.listen(args.port, args.host, () => {
    const port = server.address().port;
    // eslint-disable-next-line no-new
    new HyperliquidFeed(args.upstream, args.coin, args.depth, wsServer, () => {
      if (cluster.isWorker) process.send('ready');
      else process.stdout.write(`${JSON.stringify({ event: 'ready', port })}\n`);
    });
  });
  const stop = () => {
    clearInterval(wsServer.heartbeatInterval);
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
