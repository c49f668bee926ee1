// The admin dashboard: polls GET /api/v1/admin/nodes every second with the chat client's token
// (localStorage "parley.session", written by app.js) and draws per-node line charts on <canvas>.
// Rates (messages/s, CPU %) come from counter deltas between polls; the send-to-ack p50/p99 are
// estimated from the histogram's bucket deltas over the last poll (the node's lifetime figures
// when nothing was observed in between). The latest values are exposed as data-* attributes of
// each [data-testid="node-card"] for tests.
'use strict';

(() => {
  const POLL_MS = 1000;
  const HISTORY = 120; // points per chart (two minutes)
  const SESSION_KEY = 'parley.session';

  const statusEl = document.querySelector('[data-testid="dashboard-status"]');
  const refusedEl = document.querySelector('[data-testid="dashboard-refused"]');
  const nodesEl = document.querySelector('[data-testid="dashboard-nodes"]');

  // [key, title, unit, series labels (1 or 2), formatter]
  const CHARTS = [
    ['connections', 'Connections', '', ['open'], (v) => fmt(v, 0)],
    ['msgs', 'Messages / s', '/s', ['in', 'out'], (v) => fmt(v, 1)],
    ['ack', 'Send → ack', 'ms', ['p50', 'p99'], (v) => fmt(v, 2)],
    ['queue', 'Bus queue depth', '', ['waiting'], (v) => fmt(v, 0)],
    ['store', 'Store append p99', 'ms', ['p99'], (v) => fmt(v, 2)],
    ['cpu', 'CPU', '%', ['process'], (v) => fmt(v, 1)],
    ['rss', 'Memory (RSS)', 'MiB', ['resident'], (v) => fmt(v, 1)],
  ];

  function fmt(v, digits) {
    return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
  }

  function token() {
    try {
      const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
      return s && typeof s.token === 'string' ? s.token : null;
    } catch {
      return null;
    }
  }

  function refuse(text) {
    refusedEl.textContent = text;
    refusedEl.hidden = false;
    nodesEl.hidden = true;
  }

  // histogram_quantile over bucket deltas (cumulative counts; bounds without +Inf).
  function quantile(q, bounds, cum) {
    if (!cum.length || cum[cum.length - 1] <= 0) return null;
    const rank = q * cum[cum.length - 1];
    for (let i = 0; i < cum.length; i++) {
      if (cum[i] >= rank) {
        if (i >= bounds.length) return i > 0 ? bounds[i - 1] : null;
        const lo = i > 0 ? bounds[i - 1] : 0;
        const below = i > 0 ? cum[i - 1] : 0;
        const inBucket = cum[i] - below;
        return inBucket <= 0 ? bounds[i] : lo + ((bounds[i] - lo) * (rank - below)) / inBucket;
      }
    }
    return null;
  }

  const nodes = new Map(); // node id -> {card, charts: {key: {canvas, valueEl, series}}, prev}

  function cardFor(id) {
    let n = nodes.get(id);
    if (n) return n;
    const card = document.createElement('section');
    card.className = 'node-card';
    card.setAttribute('data-testid', 'node-card');
    card.dataset.node = id;
    const h = document.createElement('h2');
    h.textContent = `Node ${id}`;
    card.append(h);
    const grid = document.createElement('div');
    grid.className = 'charts';
    card.append(grid);
    const charts = {};
    for (const [key, title, unit, labels] of CHARTS) {
      const fig = document.createElement('figure');
      fig.setAttribute('data-testid', `chart-${key}`);
      const cap = document.createElement('figcaption');
      const name = document.createElement('span');
      name.textContent = unit ? `${title} (${unit})` : title;
      if (labels.length > 1) {
        const a = document.createElement('span');
        a.className = 'legend-a';
        a.textContent = ` ${labels[0]}`;
        const b = document.createElement('span');
        b.className = 'legend-b';
        b.textContent = ` ${labels[1]}`;
        name.append(a, b);
      }
      const valueEl = document.createElement('span');
      valueEl.className = 'value';
      cap.append(name, valueEl);
      const canvas = document.createElement('canvas');
      fig.append(cap, canvas);
      grid.append(fig);
      charts[key] = { canvas, valueEl, series: labels.map(() => []) };
    }
    nodesEl.append(card);
    n = { card, charts, prev: null, seen: 0 };
    nodes.set(id, n);
    return n;
  }

  function draw(chart) {
    const { canvas, series } = chart;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 260;
    const h = canvas.clientHeight || 90;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of series) for (const v of s) if (Number.isFinite(v)) max = Math.max(max, v);
    max = max > 0 ? max * 1.15 : 1;
    const style = getComputedStyle(document.documentElement);
    const colours = [style.getPropertyValue('--a') || '#2f6fed', style.getPropertyValue('--b') || '#e0701b'];
    ctx.fillStyle = style.getPropertyValue('--muted') || '#667085';
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillText(fmt(max, max < 10 ? 2 : 0), 2, 10);
    series.forEach((s, si) => {
      ctx.strokeStyle = colours[si].trim();
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      s.forEach((v, i) => {
        const x = w - ((s.length - 1 - i) / (HISTORY - 1)) * w; // newest at the right edge
        if (!Number.isFinite(v)) {
          pen = false;
          return;
        }
        const y = h - (v / max) * (h - 12) - 1;
        if (pen) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
    });
  }

  function push(chart, values, text) {
    values.forEach((v, i) => {
      const s = chart.series[i];
      s.push(v === null || v === undefined ? NaN : v);
      if (s.length > HISTORY) s.shift();
    });
    chart.valueEl.textContent = text;
    draw(chart);
  }

  function update(stats) {
    const n = cardFor(stats.node);
    const p = n.prev;
    const dt = p ? (stats.ts - p.ts) / 1000 : 0;
    const rate = (key) => (p && dt > 0 ? Math.max(0, stats[key] - p[key]) / dt : null);
    const inRate = rate('messages_received');
    const outRate = rate('messages_delivered');
    const cpu = p && dt > 0 ? (Math.max(0, stats.cpu_seconds - p.cpu_seconds) / dt) * 100 : null;

    const ack = stats.send_to_ack || {};
    let p50 = ack.p50;
    let p99 = ack.p99;
    if (p && p.send_to_ack && Array.isArray(ack.cumulative) && ack.count > p.send_to_ack.count) {
      const delta = ack.cumulative.map((c, i) => c - (p.send_to_ack.cumulative[i] || 0));
      p50 = quantile(0.5, ack.bounds, delta);
      p99 = quantile(0.99, ack.bounds, delta);
    }
    const ms = (s) => (s === null || s === undefined ? null : s * 1000);
    const rssMiB = stats.rss_bytes / (1024 * 1024);

    const c = n.charts;
    push(c.connections, [stats.connections], fmt(stats.connections, 0));
    push(c.msgs, [inRate, outRate], `${fmt(inRate, 1)} / ${fmt(outRate, 1)}`);
    push(c.ack, [ms(p50), ms(p99)], `${fmt(ms(p50), 2)} / ${fmt(ms(p99), 2)}`);
    push(c.queue, [stats.bus_queue_depth], fmt(stats.bus_queue_depth, 0));
    push(c.store, [ms(stats.store_append_p99)], fmt(ms(stats.store_append_p99), 2));
    push(c.cpu, [cpu], fmt(cpu, 1));
    push(c.rss, [rssMiB], fmt(rssMiB, 1));

    const d = n.card.dataset;
    d.connections = String(stats.connections);
    d.sessions = String(stats.sessions);
    d.msgsIn = String(stats.messages_received);
    d.msgsOut = String(stats.messages_delivered);
    d.msgsInRate = inRate === null ? '' : inRate.toFixed(3);
    d.msgsOutRate = outRate === null ? '' : outRate.toFixed(3);
    d.ackP50Ms = ms(p50) === null ? '' : ms(p50).toFixed(3);
    d.ackP99Ms = ms(p99) === null ? '' : ms(p99).toFixed(3);
    d.queueDepth = String(stats.bus_queue_depth);
    d.storeP99Ms = ms(stats.store_append_p99) === null ? '' : ms(stats.store_append_p99).toFixed(3);
    d.cpuPercent = cpu === null ? '' : cpu.toFixed(2);
    d.rssMib = rssMiB.toFixed(1);
    d.samples = String(++n.seen);
    n.prev = stats;
  }

  let timer = null;
  async function poll() {
    const t = token();
    if (!t) {
      refuse('Log in to the chat first: the dashboard uses your chat session. Admins only.');
      statusEl.textContent = 'not logged in';
      return;
    }
    try {
      const res = await fetch('/api/v1/admin/nodes', {
        headers: { Authorization: `Bearer ${t}` },
        cache: 'no-store',
      });
      if (res.status === 401) {
        refuse('Your session has expired: log in to the chat again. Admins only.');
        statusEl.textContent = 'not logged in';
        return;
      }
      if (res.status === 403) {
        refuse(
          'Admins only: your account is not an admin. An operator can grant it with ' +
            '"parleyd admin grant <user>".',
        );
        statusEl.textContent = 'refused';
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await res.json();
      refusedEl.hidden = true;
      nodesEl.hidden = false;
      const live = new Set();
      for (const s of body.nodes || []) {
        if (!s || typeof s.node !== 'string') continue;
        live.add(s.node);
        update(s);
      }
      for (const [id, n] of nodes) {
        if (!live.has(id)) {
          n.card.remove();
          nodes.delete(id);
        }
      }
      statusEl.textContent = `${live.size} node${live.size === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      statusEl.textContent = `cannot reach the server (${err.message}); retrying`;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && timer === null) poll();
  });
  poll();
})();
