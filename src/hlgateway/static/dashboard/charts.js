// Small canvas charts for the dashboard: a live price line and a cumulative depth chart.
// Drawn by hand (no library): a few hundred points, redrawn at most once per frame.

const COLORS = { line: '#4c9aff', fill: 'rgba(76,154,255,0.12)', grid: '#26313d', text: '#7d8a99',
  bid: '#2ebd85', bidFill: 'rgba(46,189,133,0.18)', ask: '#f0616d', askFill: 'rgba(240,97,109,0.18)' };

/** A canvas sized to its CSS box in device pixels; returns its 2D context and CSS size. */
function prepare(canvas) {
  const ratio = globalThis.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, width, height };
}

/** Decimals a price of this size is shown with. */
export function priceDigits(reference) {
  const abs = Math.abs(reference);
  return abs >= 1000 ? 1 : abs >= 100 ? 2 : abs >= 1 ? 4 : 6;
}

/** A price with as many decimals as its size (or that of `reference`) needs. */
export function formatPrice(value, reference = value) {
  if (value === undefined || value === null || Number.isNaN(value)) return '–';
  const digits = priceDigits(reference);
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export class PriceChart {
  constructor(canvas, capacity = 600) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.points = []; // [timestamp ms, price]
  }

  reset(points = []) {
    this.points = points.slice(-this.capacity);
  }

  push(timestamp, price) {
    const last = this.points[this.points.length - 1];
    if (last && last[0] >= timestamp) return;
    this.points.push([timestamp, price]);
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
  }

  draw() {
    const { ctx, width, height } = prepare(this.canvas);
    const pts = this.points;
    this.canvas.dataset.points = String(pts.length);
    const pad = { left: 8, right: 72, top: 10, bottom: 20 };
    if (pts.length < 2) {
      ctx.fillStyle = COLORS.text;
      ctx.fillText('waiting for prices…', pad.left + 4, height / 2);
      return;
    }
    let lo = Infinity; let hi = -Infinity;
    for (const [, p] of pts) { if (p < lo) lo = p; if (p > hi) hi = p; }
    const span = hi - lo || Math.abs(hi) * 1e-4 || 1;
    lo -= span * 0.08; hi += span * 0.08;
    const t0 = pts[0][0]; const t1 = pts[pts.length - 1][0];
    const w = width - pad.left - pad.right; const h = height - pad.top - pad.bottom;
    const x = (t) => pad.left + ((t - t0) / (t1 - t0 || 1)) * w;
    const y = (p) => pad.top + (1 - (p - lo) / (hi - lo)) * h;

    ctx.strokeStyle = COLORS.grid; ctx.fillStyle = COLORS.text; ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i += 1) {
      const p = lo + ((hi - lo) * i) / 4;
      const yy = Math.round(y(p)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(pad.left + w, yy); ctx.stroke();
      ctx.fillText(formatPrice(p), pad.left + w + 6, yy + 4);
    }
    // Time labels, spaced at least 70 px apart, never the same one twice.
    let lastX = -Infinity; let lastLabel = '';
    const count = Math.max(1, Math.floor(w / 140));
    for (let i = 0; i <= count; i += 1) {
      const t = t0 + ((t1 - t0) * i) / count;
      const label = new Date(t).toLocaleTimeString('en-GB', { hour12: false });
      const xx = Math.min(Math.max(pad.left, x(t) - 24), pad.left + w - 48);
      if (label === lastLabel || xx - lastX < 70) continue;
      ctx.fillText(label, xx, height - 5);
      lastX = xx; lastLabel = label;
    }

    ctx.beginPath();
    pts.forEach(([t, p], i) => (i ? ctx.lineTo(x(t), y(p)) : ctx.moveTo(x(t), y(p))));
    ctx.strokeStyle = COLORS.line; ctx.lineWidth = 1.5; ctx.stroke();
    ctx.lineTo(x(t1), pad.top + h); ctx.lineTo(x(t0), pad.top + h); ctx.closePath();
    ctx.fillStyle = COLORS.fill; ctx.fill();

    const [, last] = pts[pts.length - 1];
    const ly = y(last);
    ctx.fillStyle = COLORS.line;
    ctx.fillRect(pad.left + w + 2, ly - 8, pad.right - 4, 16);
    ctx.fillStyle = '#fff';
    ctx.fillText(formatPrice(last), pad.left + w + 6, ly + 4);
  }
}

/** Cumulative size per side: [[price, cumulative]...] from [[price, size]...]. */
export function cumulative(levels) {
  let total = 0;
  return levels.map(([price, size]) => { total += size; return [price, total]; });
}

export function drawDepth(canvas, bids, asks) {
  const { ctx, width, height } = prepare(canvas);
  if (!bids.length || !asks.length) return;
  const cb = cumulative(bids); const ca = cumulative(asks);
  const lo = bids[bids.length - 1][0]; const hi = asks[asks.length - 1][0];
  const top = Math.max(cb[cb.length - 1][1], ca[ca.length - 1][1]) * 1.05;
  const pad = 4;
  const x = (p) => pad + ((p - lo) / (hi - lo || 1)) * (width - 2 * pad);
  const y = (v) => height - pad - (v / top) * (height - 2 * pad);
  const side = (points, stroke, fill) => {
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), y(0));
    let prev = 0;
    for (const [p, v] of points) { ctx.lineTo(x(p), y(prev)); ctx.lineTo(x(p), y(v)); prev = v; }
    const end = points[points.length - 1][0];
    ctx.lineTo(x(end), y(0));
    ctx.closePath();
    ctx.fillStyle = fill; ctx.fill();
    ctx.strokeStyle = stroke; ctx.lineWidth = 1.2; ctx.stroke();
  };
  side(cb, COLORS.bid, COLORS.bidFill);
  side(ca, COLORS.ask, COLORS.askFill);
}

/**
 * Candlesticks of a `candles` series ({t, open, high, low, close, volume}...), oldest first,
 * with volume bars along the bottom. Shows the last `count` that fit (at least 3 px each).
 */
export function drawCandles(canvas, candles, interval) {
  const { ctx, width, height } = prepare(canvas);
  const pad = { left: 8, right: 72, top: 10, bottom: 20 };
  const w = width - pad.left - pad.right;
  const fit = Math.max(1, Math.floor(w / 4));
  const shown = (candles || []).slice(-Math.min(fit, 120));
  canvas.dataset.candles = String((candles || []).length);
  canvas.dataset.interval = interval || '';
  if (!shown.length) {
    ctx.fillStyle = COLORS.text;
    ctx.fillText('waiting for candles…', pad.left + 4, height / 2);
    return;
  }
  let lo = Infinity; let hi = -Infinity; let vmax = 0;
  for (const c of shown) {
    if (c.low < lo) lo = c.low; if (c.high > hi) hi = c.high; if (c.volume > vmax) vmax = c.volume;
  }
  const span = hi - lo || Math.abs(hi) * 1e-4 || 1;
  lo -= span * 0.05; hi += span * 0.05;
  const volumeH = (height - pad.top - pad.bottom) * 0.18;
  const h = height - pad.top - pad.bottom - volumeH;
  const step = w / shown.length;
  const body = Math.max(1, Math.min(12, step * 0.7));
  const y = (p) => pad.top + (1 - (p - lo) / (hi - lo)) * h;

  ctx.strokeStyle = COLORS.grid; ctx.fillStyle = COLORS.text; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const p = lo + ((hi - lo) * i) / 4;
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(pad.left + w, yy); ctx.stroke();
    ctx.fillText(formatPrice(p), pad.left + w + 6, yy + 4);
  }
  const daily = interval && /[dwM]$/.test(interval);
  const label = (t) => (daily ? new Date(t).toISOString().slice(5, 10)
    : new Date(t).toLocaleTimeString('en-GB', { hour12: false, hour: '2-digit', minute: '2-digit' }));
  const every = Math.max(1, Math.ceil(80 / step));
  shown.forEach((c, i) => {
    const cx = pad.left + step * (i + 0.5);
    const up = c.close >= c.open;
    ctx.strokeStyle = up ? COLORS.bid : COLORS.ask;
    ctx.fillStyle = up ? COLORS.bid : COLORS.ask;
    ctx.beginPath(); ctx.moveTo(cx, y(c.high)); ctx.lineTo(cx, y(c.low)); ctx.stroke();
    const top = y(Math.max(c.open, c.close));
    ctx.fillRect(cx - body / 2, top, body, Math.max(1, y(Math.min(c.open, c.close)) - top));
    if (vmax > 0) {
      const vh = (c.volume / vmax) * volumeH;
      ctx.globalAlpha = 0.35;
      ctx.fillRect(cx - body / 2, height - pad.bottom - vh, body, vh);
      ctx.globalAlpha = 1;
    }
    if (i % every === 0) {
      ctx.fillStyle = COLORS.text;
      ctx.fillText(label(c.t), Math.max(pad.left, Math.min(cx - 14, pad.left + w - 40)), height - 5);
    }
  });
  const last = shown[shown.length - 1];
  const ly = y(last.close);
  ctx.fillStyle = last.close >= last.open ? COLORS.bid : COLORS.ask;
  ctx.fillRect(pad.left + w + 2, ly - 8, pad.right - 4, 16);
  ctx.fillStyle = '#fff';
  ctx.fillText(formatPrice(last.close), pad.left + w + 6, ly + 4);
}
