// Flextide dashboard: refreshes the counts every 5 s and draws the charts
// from the in-process samples. Every page works without it; it sets text
// only through textContent, never as HTML.
(() => {
  'use strict';
  const base = document.body.dataset.base || '';
  const REFRESH_MS = 5000;

  const fmtAge = (s) =>
    s == null ? '–'
      : s < 120 ? `${Math.round(s)} s`
      : s < 7200 ? `${Math.round(s / 60)} min`
      : s < 172800 ? `${(s / 3600).toFixed(1)} h`
      : `${(s / 86400).toFixed(1)} d`;
  const fmtRate = (r) => (r == null ? '–' : r >= 100 ? r.toFixed(0) : r.toFixed(1));
  const fmtNum = (n) => (n >= 100 ? n.toFixed(0) : Number(n.toFixed(1)).toString());
  const fmt = (field, v) =>
    field === 'oldest_seconds' ? fmtAge(v) : field.endsWith('_per_min') ? fmtRate(v) : String(v);

  function fill(root, data) {
    for (const cell of root.querySelectorAll('[data-field]')) {
      const f = cell.dataset.field;
      if (f in data) cell.textContent = fmt(f, data[f]);
    }
  }

  async function getJSON(path) {
    const r = await fetch(base + path, {
      credentials: 'same-origin',
      headers: { accept: 'application/json' },
    });
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    return r.json();
  }

  const NS = 'http://www.w3.org/2000/svg';
  function svgEl(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text != null) e.textContent = text;
    return e;
  }

  const SERIES = {
    depth: [
      ['ready', 'Ready', (s) => s.ready],
      ['in-flight', 'In flight', (s) => s.in_flight],
      ['delayed', 'Delayed', (s) => s.delayed],
      ['dead', 'Dead letters', (s) => s.dead_letters],
    ],
    throughput: [
      ['processed', 'Processed/min', (s) => s.processed_per_min],
      ['failed', 'Failed/min', (s) => s.failed_per_min],
    ],
  };

  function draw(svg, samples, series) {
    const W = 600, H = 160, L = 44, R = 8, T = 22, B = 20;
    svg.replaceChildren();
    // The server's clock, so a skewed browser clock does not shift the lines.
    const now = samples.length ? samples[samples.length - 1].at_ms : Date.now();
    // The last hour, or less while the samples cover less (at least 2 min).
    const covered = samples.length ? now - samples[0].at_ms : 0;
    const SPAN = Math.min(3600e3, Math.max(120e3, covered));
    const from = now - SPAN;
    let max = 1;
    for (const s of samples) for (const [, , f] of series) {
      const v = f(s);
      if (v != null && v > max) max = v;
    }
    const x = (t) => L + ((t - from) / SPAN) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    for (const v of [0, max / 2, max]) {
      svg.append(svgEl('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
      svg.append(svgEl('text', { x: L - 4, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmtNum(v)));
    }
    for (let k = 4; k >= 0; k--) {
      const ago = (SPAN * k) / 4;
      const label = k === 0 ? 'now' : ago >= 120e3 ? `−${Math.round(ago / 60e3)} min` : `−${Math.round(ago / 1e3)} s`;
      svg.append(svgEl('text', { x: x(now - ago), y: H - 5, class: 'tick', 'text-anchor': k === 0 ? 'end' : 'middle' }, label));
    }
    series.forEach(([cls, label, f], i) => {
      const pts = samples
        .filter((s) => f(s) != null && s.at_ms >= from)
        .map((s) => [x(s.at_ms), y(f(s))]);
      if (pts.length === 1) pts.push([pts[0][0] + 2, pts[0][1]]);
      svg.append(svgEl('polyline', {
        points: pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' '),
        class: `line ${cls}`,
      }));
      svg.append(svgEl('rect', { x: L + 4 + i * 120, y: 6, width: 10, height: 10, class: `key ${cls}` }));
      svg.append(svgEl('text', { x: L + 18 + i * 120, y: 15, class: 'legend' }, label));
    });
    if (!samples.length) {
      svg.append(svgEl('text', { x: W / 2, y: H / 2, class: 'tick', 'text-anchor': 'middle' }, 'no sample yet'));
    }
  }

  async function charts() {
    const byQueue = new Map();
    for (const svg of document.querySelectorAll('svg[data-chart]')) {
      const q = svg.dataset.queue;
      if (!byQueue.has(q)) byQueue.set(q, await getJSON(`/api/queues/${encodeURIComponent(q)}/history`));
      draw(svg, byQueue.get(q).samples, SERIES[svg.dataset.chart] || []);
    }
  }

  async function refresh() {
    const overview = document.querySelector('[data-live="overview"]');
    if (overview) {
      const { queues } = await getJSON('/api/queues');
      for (const q of queues) {
        const row = overview.querySelector(`tr[data-queue="${CSS.escape(q.name)}"]`);
        if (row && !q.error) fill(row, q);
      }
    }
    const cards = document.querySelector('[data-live="queue"]');
    if (cards) {
      const q = await getJSON(`/api/queues/${encodeURIComponent(cards.dataset.queue)}`);
      if (!q.error) fill(cards, q);
    }
    await charts();
    document.body.dataset.refreshed = String(Date.now());
  }

  const all = document.getElementById('select-all');
  if (all) {
    all.addEventListener('change', () => {
      for (const box of document.querySelectorAll('#replay-form input[name="id"]')) box.checked = all.checked;
    });
  }

  // A delete is for good: its button asks first. Without this script the
  // form still works, unasked, as every other action does.
  document.addEventListener('click', (ev) => {
    const button = ev.target.closest && ev.target.closest('button[data-confirm]');
    if (button && !window.confirm(button.dataset.confirm)) ev.preventDefault();
  });

  if (document.querySelector('[data-live], svg[data-chart]')) {
    const tick = () => refresh().catch((e) => console.warn('dashboard refresh:', e));
    tick();
    setInterval(tick, REFRESH_MS);
  }
})();
