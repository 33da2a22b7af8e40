// The seed's TradingWebSocket, copied unchanged from the design document
// (shared/seed/websocket-documentation.md), run under Node with the `ws` package.
// The test driver reads the lines this script prints that start with "EVENT ".
'use strict';
globalThis.WebSocket = require('ws');

class TradingWebSocket {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.ws = null;
    this.isConnected = false;
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = 5;
    this.reconnectInterval = 1000;
    this.subscriptions = new Map();
    this.eventHandlers = new Map();
    this.messageQueue = [];
    
    this.connect();
  }

  connect() {
    try {
      this.ws = new WebSocket(`${this.url}?token=${this.token}`);
      
      this.ws.onopen = this.handleOpen.bind(this);
      this.ws.onmessage = this.handleMessage.bind(this);
      this.ws.onclose = this.handleClose.bind(this);
      this.ws.onerror = this.handleError.bind(this);
      
    } catch (error) {
      console.error('WebSocket connection failed:', error);
      this.scheduleReconnect();
    }
  }

  handleOpen() {
    console.log('WebSocket connected');
    this.isConnected = true;
    this.reconnectAttempts = 0;
    
    // Process queued messages
    while (this.messageQueue.length > 0) {
      const message = this.messageQueue.shift();
      this.send(message);
    }
    
    // Resubscribe to previous subscriptions
    this.subscriptions.forEach((params, channel) => {
      this.subscribe(channel, params);
    });
    
    this.emit('connected');
  }

  handleMessage(event) {
    try {
      const message = JSON.parse(event.data);
      
      switch (message.type) {
        case 'welcome':
          console.log('Welcome message received:', message);
          this.emit('welcome', message);
          break;
          
        case 'data':
          this.handleDataMessage(message);
          break;
          
        case 'subscribed':
          console.log('Subscribed to:', message.channel);
          this.emit('subscribed', message);
          break;
          
        case 'unsubscribed':
          console.log('Unsubscribed from:', message.channel);
          this.emit('unsubscribed', message);
          break;
          
        case 'error':
          console.error('WebSocket error:', message.message);
          this.emit('error', message);
          break;
          
        case 'pong':
          this.emit('pong', message);
          break;
          
        default:
          console.warn('Unknown message type:', message.type);
      }
      
    } catch (error) {
      console.error('Error parsing WebSocket message:', error);
    }
  }

  handleDataMessage(message) {
    const { channel, params, data } = message;
    const subscriptionKey = this.createSubscriptionKey(channel, params);
    
    // Emit specific channel event
    this.emit(`data:${channel}`, data, params);
    
    // Emit generic data event
    this.emit('data', { channel, params, data });
  }

  handleClose(event) {
    console.log('WebSocket disconnected:', event.code, event.reason);
    this.isConnected = false;
    this.emit('disconnected', event);
    
    if (event.code !== 1000) { // Not a normal closure
      this.scheduleReconnect();
    }
  }

  handleError(error) {
    console.error('WebSocket error:', error);
    this.emit('error', error);
  }

  scheduleReconnect() {
    if (this.reconnectAttempts < this.maxReconnectAttempts) {
      this.reconnectAttempts++;
      const delay = this.reconnectInterval * Math.pow(2, this.reconnectAttempts - 1);
      
      console.log(`Reconnecting in ${delay}ms (attempt ${this.reconnectAttempts})`);
      
      setTimeout(() => {
        this.connect();
      }, delay);
    } else {
      console.error('Max reconnection attempts reached');
      this.emit('maxReconnectAttemptsReached');
    }
  }

  send(message) {
    if (this.isConnected && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    } else {
      // Queue message for when connection is established
      this.messageQueue.push(message);
    }
  }

  subscribe(channel, params = {}) {
    this.subscriptions.set(channel, params);
    this.send({
      type: 'subscribe',
      channel,
      params
    });
  }

  unsubscribe(channel, params = {}) {
    this.subscriptions.delete(channel);
    this.send({
      type: 'unsubscribe',
      channel,
      params
    });
  }

  ping() {
    this.send({ type: 'ping' });
  }

  // Event handling
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
      this.eventHandlers.get(event).forEach(handler => {
        try {
          handler(...args);
        } catch (error) {
          console.error('Error in event handler:', error);
        }
      });
    }
  }

  createSubscriptionKey(channel, params) {
    return `${channel}:${JSON.stringify(params)}`;
  }

  close() {
    this.subscriptions.clear();
    if (this.ws) {
      this.ws.close(1000, 'Client closing');
    }
  }

  // Utility methods for trading bot
  subscribeToPrices(symbols = []) {
    this.subscribe('prices', { symbols });
  }

  subscribeToOrderBook(symbol, depth = 10) {
    this.subscribe('orderbook', { symbol, depth });
  }

  subscribeToUserOrders(userId) {
    this.subscribe('user_orders', { userId });
  }

  subscribeToUserFills(userId) {
    this.subscribe('user_fills', { userId });
  }
}

// ---- driver (not part of the seed) ----
const [url, token, userId] = process.argv.slice(2);
const report = (event, extra = {}) =>
  process.stdout.write('EVENT ' + JSON.stringify({ event, ...extra }) + '\n');
// Keep the console quiet: the seed logs every message.
console.log = () => {};
console.warn = () => {};
console.error = () => {};

// `shutdown` is not among the seed's message types; observe it in a subclass
// so the seed's class itself stays unchanged.
class ObservedTradingWebSocket extends TradingWebSocket {
  handleMessage(event) {
    try {
      const m = JSON.parse(event.data);
      if (m.type === 'shutdown') report('shutdown', { message: m.message });
    } catch (e) { /* the seed reports parse errors itself */ }
    super.handleMessage(event);
  }
}

const client = new ObservedTradingWebSocket(url, token);
let connects = 0;
client.on('welcome', (m) => report('welcome', { user: m.user }));
client.on('connected', () => {
  connects += 1;
  report('connected', { connects });
  client.subscribeToPrices(['BTC', 'ETH', 'SOL']);
  client.subscribeToOrderBook('BTC', 5);
  client.subscribeToUserOrders(userId);
  client.subscribeToUserFills(userId);
  client.subscribe('trades', { symbol: 'ETH' });
  client.ping();
});
client.on('subscribed', (m) => report('subscribed', { channel: m.channel, params: m.params }));
client.on('pong', () => report('pong'));
client.on('error', (m) => report('error', { code: m && m.code }));
client.on('disconnected', (e) => report('disconnected', { code: e.code, reason: e.reason }));
client.on('data', ({ channel, params, data }) => report('data', { channel, params, data }));
process.stdin.on('data', (chunk) => {
  const text = chunk.toString();
  if (text.includes('forbidden')) {
    client.send({ type: 'subscribe', channel: 'user_fills', params: { userId: 'somebody-else' } });
  }
  if (text.includes('garbage')) client.ws.send('this is not json');
});
process.stdin.on('end', () => { client.close(); process.exit(0); });
