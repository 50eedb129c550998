// plasm dashboard: takes over the server-rendered page. Same origin only, no
// dependencies, no build step. The token (when the node needs one) lives in
// sessionStorage and travels as a bearer header, never in a URL.
'use strict';

(function () {
  const TOKEN_KEY = 'plasm-token';
  const FINAL = new Set(['succeeded', 'failed']);
  const MAX_ROWS = 200;
  const $ = (id) => document.getElementById(id);
  const jobs = new Map(); // job id -> last known job object

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), cache: 'no-store' };
    if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
    const r = await fetch(path, init);
    const text = await r.text();
    let v = null;
    try { v = text ? JSON.parse(text) : null; } catch (_) { v = null; }
    if (!r.ok) {
      const e = (v && v.error) || {};
      if (r.status === 401 || r.status === 403) askToken(e.message || 'the token was refused');
      throw new ApiError(r.status, e.code || 'error', e.message || ('HTTP ' + r.status));
    }
    return v;
  }

  function short(id) {
    if (typeof id !== 'string') return '—';
    return id.length > 16 ? id.slice(0, 8) + '…' + id.slice(-6) : id;
  }

  function txt(v) {
    if (v === null || v === undefined) return '—';
    if (Array.isArray(v)) return v.length ? v.map(txt).join(', ') : '—';
    return String(v);
  }

  function setText(id, v) {
    const el = $(id);
    if (el) el.textContent = txt(v);
  }

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(c);
    return e;
  }

  function live(state, text) {
    const l = $('live');
    l.textContent = text;
    l.className = 'pill ' + state;
  }

  // --- token -------------------------------------------------------------
  function askToken(why) {
    $('auth').hidden = false;
    $('auth-error').textContent = why || '';
  }

  function setupToken() {
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      $('auth').hidden = true;
      start();
    });
  }

  // --- node, peers, capacity -------------------------------------------
  function renderNode(n) {
    setText('peer-id', n.peer_id);
    $('peer-id').title = n.peer_id;
    document.title = 'plasm node ' + short(n.peer_id);
    setText('node-peer', n.peer_id);
    setText('node-key', n.public_key);
    setText('node-version', n.version);
    setText('node-runtimes', n.capabilities && n.capabilities.runtimes);
    setText('node-labels', n.capabilities && n.capabilities.labels);
    setText('node-listen', n.listen_addrs);
    const r = n.reachability || {};
    setText('reach-status', r.status);
    setText('reach-profile', r.profile);
    setText('reach-dht', r.dht_mode);
    setText('reach-external', r.external_addrs);
    setText('reach-relays', r.relays);
    const hp = r.hole_punches || {};
    setText('reach-punches', txt(hp.successes) + ' of ' + txt(hp.attempts) + ' attempts succeeded');
    setText('reach-peers', n.connected_peers);
    const c = n.capacity || {};
    setText('cap-workers', c.workers);
    setText('cap-queue', c.queue);
    setText('cap-queued', c.queued);
    setText('cap-running', c.running);
    const form = $('capacity-form');
    form.hidden = !(n.capabilities && n.capabilities.executes);
    if (document.activeElement !== $('set-workers')) $('set-workers').value = c.workers;
    if (document.activeElement !== $('set-queue')) $('set-queue').value = c.queue;
  }

  function renderPeers(p) {
    const body = $('peers-body');
    body.replaceChildren();
    const list = (p && p.peers) || [];
    if (!list.length) {
      body.appendChild(el('tr', { class: 'empty' }, [el('td', { colspan: '4', text: 'no connected peers' })]));
    }
    for (const peer of list) {
      body.appendChild(el('tr', {}, [
        el('td', {}, [el('code', { title: peer.peer_id, text: short(peer.peer_id) })]),
        el('td', { text: typeof peer.rtt_ms === 'number' ? peer.rtt_ms.toFixed(1) + ' ms' : '—' }),
        el('td', { text: txt(peer.score) }),
        el('td', { text: txt(peer.breaker) }),
      ]));
    }
  }

  async function refreshNode() {
    const [n, p] = await Promise.all([api('GET', '/v1/node'), api('GET', '/v1/peers')]);
    renderNode(n);
    renderPeers(p);
  }

  function setupCapacity() {
    $('capacity-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const out = $('capacity-result');
      const body = {};
      if ($('set-workers').value !== '') body.workers = Number($('set-workers').value);
      if ($('set-queue').value !== '') body.queue = Number($('set-queue').value);
      try {
        const r = await api('PATCH', '/v1/node/capacity', body);
        out.textContent = 'now ' + r.workers + ' workers, queue ' + r.queue;
        out.className = 'good';
        refreshNode().catch(() => {});
      } catch (e) {
        out.textContent = e.message;
        out.className = 'bad';
      }
    });
  }

  // --- jobs ----------------------------------------------------------------
  // Where a job runs: here, or on which peer by which path (remote execution is
  // always visible, with the relay when its bytes went through one).
  function place(p, receipt) {
    p = p || {};
    const from = receipt && receipt.placement && receipt.placement.taken_over_from;
    const taken = from ? ', taken over from ' + short(from) : '';
    if (p.path === 'local') return { text: 'here (local pool' + taken + ')', remote: false };
    if (p.path && p.executor) {
      const via = p.relay ? ' via relay ' + short(p.relay) : '';
      return { text: 'peer ' + short(p.executor) + ' (' + p.path + via + taken + ')', remote: true };
    }
    if (p.requested) return { text: 'not placed yet (asked: ' + p.requested + ')', remote: false };
    return { text: '—', remote: false };
  }

  // A finished job's outcome with plasm run's exit status (0 is the only success).
  function outcomeText(j) {
    const o = j.outcome || (j.receipt && j.receipt.outcome);
    if (o && j.exit_status !== undefined && j.exit_status !== null) return o + ', exit status ' + j.exit_status;
    return o || txt(j.error || j.detail);
  }

  function jobRow(j) {
    const pl = place(j.placement, j.receipt);
    const outcome = outcomeText(j);
    const receiptCell = el('td', { class: 'receipt' });
    if (j.receipt) {
      const b = el('button', { type: 'button', class: 'verify', text: 'verify' });
      const verdict = el('span', { class: 'verdict' });
      b.addEventListener('click', () => verifyStored(j.job_id, verdict));
      receiptCell.append(b, ' ', verdict);
    } else if (!FINAL.has(j.state)) {
      // A job still queued or running can be stopped (DELETE /v1/jobs/{id}).
      const b = el('button', { type: 'button', class: 'cancel', text: 'cancel' });
      const said = el('span', { class: 'verdict' });
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          await api('DELETE', '/v1/jobs/' + encodeURIComponent(j.job_id));
          said.textContent = 'cancelling…';
        } catch (e) {
          said.textContent = e.message;
          b.disabled = false;
        }
      });
      receiptCell.append(b, ' ', said);
    } else {
      receiptCell.textContent = '—';
    }
    return el('tr', { 'data-job': j.job_id, 'data-state': j.state }, [
      el('td', {}, [el('code', { title: j.job_id, text: short(j.job_id) })]),
      el('td', { class: 'state state-' + j.state, text: j.state }),
      el('td', { class: 'where' + (pl.remote ? ' remote' : ''), text: pl.text }),
      el('td', { text: txt(j.submitted_at) }),
      el('td', { text: txt(j.finished_at) }),
      el('td', { text: outcome }),
      receiptCell,
    ]);
  }

  function putJob(j) {
    const body = $('jobs-body');
    const empty = body.querySelector('tr.empty');
    if (empty) empty.remove();
    jobs.set(j.job_id, j);
    const row = jobRow(j);
    const old = body.querySelector('tr[data-job="' + CSS.escape(j.job_id) + '"]');
    if (old) old.replaceWith(row);
    else body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  }

  async function reloadJobs() {
    const v = await api('GET', '/v1/jobs?limit=50');
    const body = $('jobs-body');
    body.replaceChildren();
    jobs.clear();
    const list = v.jobs || [];
    if (!list.length) body.appendChild(el('tr', { class: 'empty' }, [el('td', { colspan: '7', text: 'no jobs yet' })]));
    for (const j of list.slice().reverse()) putJob(j);
  }

  // Jobs this node ran for peers (GET /v1/served), refreshed with the node status.
  async function reloadServed() {
    const v = await api('GET', '/v1/served?limit=50');
    const body = $('served-body');
    if (!body) return;
    const list = v.served || [];
    body.replaceChildren();
    if (!list.length) body.appendChild(el('tr', { class: 'empty' }, [el('td', { colspan: '6', text: 'no jobs run for peers yet' })]));
    for (const j of list) {
      const ok = j.exit_status === 0;
      body.appendChild(el('tr', { 'data-served': j.job_id }, [
        el('td', {}, [el('code', { title: j.job_id, text: short(j.job_id) })]),
        el('td', {}, [el('code', { title: j.requester, text: short(j.requester) })]),
        el('td', { text: txt(j.path) }),
        el('td', { text: txt(j.finished_at) }),
        el('td', { class: 'state state-' + (ok ? 'succeeded' : 'failed'), text: outcomeText(j) }),
        el('td', { text: txt(j.fuel_used) }),
      ]));
    }
  }

  // An event carries the state and where the job runs; the stored job (with its
  // receipt) is fetched when it ends.
  async function onEvent(ev) {
    const prev = jobs.get(ev.job_id) || { job_id: ev.job_id, placement: {} };
    const j = Object.assign({}, prev, { state: ev.state, detail: ev.detail });
    if (ev.placement) j.placement = Object.assign({}, prev.placement, ev.placement);
    if (ev.state === 'queued' && !prev.submitted_at) j.submitted_at = ev.at;
    putJob(j);
    if (FINAL.has(ev.state)) {
      try { putJob(await api('GET', '/v1/jobs/' + encodeURIComponent(ev.job_id))); } catch (_) { /* shown as is */ }
    }
  }

  // --- the event stream -------------------------------------------------
  // fetch, not EventSource: EventSource cannot send an Authorization header.
  let lastId = null;
  let following = false;

  function parseBlock(block) {
    const e = { event: 'message', data: [], id: null };
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') e.event = value;
      else if (field === 'data') e.data.push(value);
      else if (field === 'id') e.id = value;
    }
    return e;
  }

  async function follow() {
    if (following) return;
    following = true;
    let pause = 500;
    for (;;) {
      try {
        const h = headers({ Accept: 'text/event-stream' });
        if (lastId) h['Last-Event-ID'] = lastId;
        const r = await fetch('/v1/events', { headers: h, cache: 'no-store' });
        if (r.status === 401 || r.status === 403) {
          askToken('the token was refused');
          following = false;
          live('down', 'needs a token');
          return;
        }
        if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
        live('up', 'live');
        pause = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
            const e = parseBlock(block);
            if (e.id) lastId = e.id;
            if (e.event === 'state' && e.data.length) await onEvent(JSON.parse(e.data.join('\n')));
            else if (e.event === 'reset') await reloadJobs();
          }
          if (buf.length > 1 << 20) throw new Error('event too large');
        }
      } catch (_) {
        // fall through to reconnect
      }
      live('down', 'reconnecting…');
      await new Promise((res) => setTimeout(res, pause));
      pause = Math.min(pause * 2, 10000);
    }
  }

  // --- receipts -----------------------------------------------------------
  function showVerdict(out, v) {
    if (v.valid) {
      out.textContent = '✓ valid, signed by ' + short((v.executor && v.executor.peer_id) || '');
      out.className = 'verdict good';
    } else {
      out.textContent = '✗ invalid' + (v.check ? ' (' + v.check + ')' : '') + ': ' + txt(v.reason || v.error);
      out.className = 'verdict bad';
    }
    out.setAttribute('data-valid', String(!!v.valid));
  }

  async function verifyText(text, out) {
    out.textContent = 'checking…';
    out.className = 'verdict';
    try {
      const r = await fetch('/v1/receipts/verify', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text, cache: 'no-store' });
      const v = await r.json();
      if (r.ok) showVerdict(out, v);
      else showVerdict(out, { valid: false, error: (v.error && v.error.message) || ('HTTP ' + r.status) });
    } catch (e) {
      showVerdict(out, { valid: false, error: e.message });
    }
  }

  async function verifyStored(jobId, out) {
    try {
      const r = await fetch('/v1/receipts/' + encodeURIComponent(jobId), { headers: headers(), cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const text = await r.text();
      $('verify-input').value = text;
      await verifyText(text, out);
    } catch (e) {
      showVerdict(out, { valid: false, error: e.message });
    }
  }

  function setupVerify() {
    const b = $('verify-button');
    b.hidden = false;
    b.addEventListener('click', () => verifyText($('verify-input').value, $('verify-result')));
  }

  // --- start ----------------------------------------------------------------
  async function start() {
    try {
      await refreshNode();
    } catch (e) {
      if (e instanceof ApiError) return; // askToken already shown for 401/403
      live('down', 'node unreachable');
      setTimeout(start, 2000);
      return;
    }
    $('auth').hidden = true;
    const locked = $('locked');
    if (locked) locked.hidden = true;
    await reloadJobs().catch(() => {});
    await reloadServed().catch(() => {});
    follow();
  }

  document.addEventListener('DOMContentLoaded', () => {
    setupToken();
    setupCapacity();
    setupVerify();
    start();
    setInterval(() => { if (!$('auth').hidden) return; refreshNode().catch(() => {}); reloadServed().catch(() => {}); }, 5000);
  });
})();
