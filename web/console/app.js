// mediafork web console: plain JavaScript, no build step, no outside resource.
// The token lives in sessionStorage for this tab; it goes to this server only,
// in the Authorization header (fetch) or a WebSocket subprotocol, never in a URL.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50, MAX_ENDED = 200, MIN_DB = -96;
  const S = {
    token: null, ws: null, retry: 0, timer: 0, clockSkew: 0,
    forks: new Map(), // id -> {row, d, search}
    ended: [], endedDirty: true, switches: [], listenIn: false,
    page: 0, filter: '', onlyFaults: false, frame: 0,
  };
  // Measured by the page itself (the browser test reads it).
  const stats = window.mfStats = { messages: 0, bytes: 0, renders: 0, renderMs: 0, maxRenderMs: 0, lastRenderMs: 0 };

  // ---- authentication ----
  const b64url = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const authHeaders = () => (S.token ? { Authorization: 'Bearer ' + S.token } : {});
  const protocols = () => (S.token ? ['mediafork.v1', 'bearer.' + b64url(S.token)] : ['mediafork.v1']);
  const wsURL = (path) => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;

  function showLogin(msg) {
    closeFeed();
    stopListening();
    $('app').hidden = true; $('logout').hidden = true; $('login').hidden = false;
    S.forks.clear(); S.ended = []; S.switches = []; renderSwitches();
    $('login-error').hidden = !msg; $('login-error').textContent = msg || '';
    $('conn').textContent = '';
  }

  async function login(token) {
    S.token = token;
    let res;
    try {
      res = await fetch('/v1/console/snapshot', { headers: authHeaders(), cache: 'no-store' });
    } catch (e) {
      showLogin('Cannot reach mediafork: ' + e.message);
      return;
    }
    if (res.status === 401) {
      sessionStorage.removeItem('mf.token');
      S.token = null;
      showLogin('Wrong token: the server refused it (401).');
      return;
    }
    if (!res.ok) { showLogin('The server answered ' + res.status + '.'); return; }
    sessionStorage.setItem('mf.token', token);
    const text = await res.text();
    apply(JSON.parse(text), text.length);
    $('login').hidden = true; $('app').hidden = false; $('logout').hidden = false;
    openFeed();
  }

  // ---- the live feed ----
  function openFeed() {
    closeFeed();
    const ws = new WebSocket(wsURL('/v1/console/feed'), protocols());
    S.ws = ws;
    $('conn').textContent = 'connecting…';
    ws.onopen = () => { S.retry = 0; $('conn').textContent = 'live'; $('conn').className = 'up'; };
    ws.onmessage = (ev) => { apply(JSON.parse(ev.data), ev.data.length); };
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      $('conn').textContent = 'disconnected: reconnecting…'; $('conn').className = 'down';
      S.retry = Math.min(10000, S.retry ? S.retry * 2 : 500);
      S.timer = setTimeout(() => login(S.token || ''), S.retry);
    };
  }
  function closeFeed() {
    clearTimeout(S.timer);
    if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  }

  function apply(m, size) {
    stats.messages++; stats.bytes += size;
    S.clockSkew = m.now - Date.now();
    if (m.t === 'full') { S.forks.clear(); S.listenIn = !!m.listen_in; S.ended = []; }
    if (m.sw) { S.switches = m.sw; renderSwitches(); }
    for (const r of m.add || []) {
      const search = [r.uuid, r.channel, r.caller, r.callee, r.trigger, r.rule, r.profile, r.server, (r.endpoints || []).join(' ')].join(' ').toLowerCase();
      S.forks.set(r.id, { row: r, d: null, search });
    }
    for (const d of m.upd || []) { const f = S.forks.get(d[0]); if (f) f.d = d; }
    for (const id of m.del || []) S.forks.delete(id);
    if (m.ended && m.ended.length) {
      S.ended.push(...m.ended);
      if (S.ended.length > MAX_ENDED) S.ended.splice(0, S.ended.length - MAX_ENDED);
      S.endedDirty = true;
    }
    schedule();
  }

  function schedule() { if (!S.frame) S.frame = requestAnimationFrame(render); }

  // ---- rendering: only the page in view, into rows made once ----
  const pool = [];
  function cell(tr, cls) { const td = document.createElement('td'); if (cls) td.className = cls; tr.appendChild(td); return td; }
  function set(el, text) { if (el.textContent !== text) el.textContent = text; }
  function meterCell(tr) {
    const td = cell(tr, 'lvl num');
    const bar = document.createElement('span'); bar.className = 'meter';
    const fill = document.createElement('i'); bar.appendChild(fill);
    const val = document.createElement('span');
    td.append(bar, val);
    return { td, fill, val };
  }
  function poolRow(i) {
    if (pool[i]) return pool[i];
    const tr = document.createElement('tr');
    const r = { tr };
    r.uuid = cell(tr, 'uuid'); r.channel = cell(tr); r.parties = cell(tr); r.trigger = cell(tr); r.profile = cell(tr);
    r.eps = cell(tr, 'eps'); r.age = cell(tr, 'num'); r.packets = cell(tr, 'num'); r.drops = cell(tr, 'num');
    r.m0 = meterCell(tr); r.m1 = meterCell(tr); r.audio = cell(tr);
    const act = cell(tr);
    r.stop = document.createElement('button'); r.stop.type = 'button'; r.stop.className = 'stop'; r.stop.textContent = 'Stop';
    r.listen = document.createElement('button'); r.listen.type = 'button'; r.listen.className = 'listen'; r.listen.textContent = 'Listen';
    act.append(r.stop, ' ', r.listen);
    r.stop.onclick = () => stopFork(r.fork);
    r.listen.onclick = () => startListening(r.fork);
    pool[i] = r;
    return r;
  }
  const fmtAge = (ms) => { const s = Math.max(0, Math.floor(ms / 1000)); return s < 60 ? s + 's' : s < 3600 ? Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') : Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0'); };
  function levelOf(f, dir) {
    const i = f.row.levels.indexOf(dir);
    if (i < 0 || i > 1 || !f.d) return null;
    return { db: f.d[7 + i], silent: (f.d[9] >> i) & 1 };
  }
  function fault(f) {
    if (!f.d) return '';
    if (f.d[9] & 4) return ''; // paused: silent on purpose
    const n = f.row.levels.length, s0 = f.d[9] & 1, s1 = (f.d[9] >> 1) & 1;
    if (n === 2 && s0 && s1) return 'silent';
    if (n === 2 && (s0 || s1)) return 'one-way: ' + (s0 ? f.row.levels[0] : f.row.levels[1]) + ' silent';
    if (n === 1 && s0) return 'silent';
    return '';
  }
  function setMeter(m, lvl, label) {
    if (!lvl) { set(m.val, '–'); m.fill.style.width = '0'; m.td.classList.remove('silent'); m.td.dataset.db = ''; return; }
    const pct = Math.max(0, Math.min(100, (lvl.db - MIN_DB) * 100 / -MIN_DB));
    m.fill.style.width = pct.toFixed(0) + '%';
    set(m.val, lvl.db <= MIN_DB ? '−∞' : String(lvl.db));
    m.td.dataset.db = String(lvl.db);
    m.td.classList.toggle('silent', !!lvl.silent);
    m.td.title = label + (lvl.silent ? ': silent' : '');
  }

  function render() {
    S.frame = 0;
    const t0 = performance.now();
    const now = Date.now() + S.clockSkew;
    const q = S.filter;
    const list = [];
    let faults = 0;
    for (const f of S.forks.values()) {
      const flt = fault(f);
      if (flt) faults++;
      if (q && !f.search.includes(q)) continue;
      if (S.onlyFaults && !flt) continue;
      list.push(f);
    }
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (S.page >= pages) S.page = pages - 1;
    const start = S.page * PAGE, shown = list.slice(start, start + PAGE);
    const tbody = $('live').tBodies[0];
    shown.forEach((f, i) => {
      const r = poolRow(i), row = f.row, d = f.d || [];
      r.fork = f;
      if (r.tr.dataset.uuid !== row.uuid || r.id !== row.id) {
        r.id = row.id;
        r.tr.dataset.uuid = row.uuid; r.tr.dataset.id = String(row.id);
        set(r.uuid, row.uuid); r.uuid.title = 'stream ' + row.stream_id + (row.bug ? ', bug ' + row.bug : '') + ', ' + row.module + ' on ' + (row.server || '?');
        set(r.channel, row.channel || '');
        set(r.parties, (row.caller || '?') + ' → ' + (row.callee || '?'));
        set(r.trigger, row.trigger + (row.rule ? ' (' + row.rule + ')' : ''));
        set(r.profile, row.profile || '');
        set(r.eps, row.endpoints.join(', ')); r.eps.title = row.endpoints.join('\n');
        r.listen.hidden = !S.listenIn;
      }
      set(r.age, fmtAge(now - row.started));
      set(r.packets, (d[1] || 0) + ' / ' + (d[2] || 0) + (d[3] ? ' / ' + d[3] + ' mixed' : ''));
      set(r.drops, (d[4] || 0) + ' / ' + (d[5] || 0) + (d[6] ? ' / ' + d[6] : ''));
      setMeter(r.m0, levelOf(f, 'RX') || levelOf(f, 'MIXED'), 'RX');
      setMeter(r.m1, levelOf(f, 'TX'), 'TX');
      const flt = fault(f), paused = f.d && (f.d[9] & 4);
      set(r.audio, flt || (paused ? 'paused' : (f.d ? 'ok' : '')));
      r.audio.className = flt ? 'fault-label bad' : (paused ? 'fault-label' : 'up');

      r.tr.classList.toggle('fault', !!flt);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
    });
    while (tbody.children.length > shown.length) tbody.lastChild.remove();
    set($('live-count'), String(S.forks.size));
    $('fault-count').hidden = !faults; set($('fault-count'), faults + ' silent / one-way');
    set($('page'), (S.page + 1) + ' / ' + pages + (list.length !== S.forks.size ? ' (' + list.length + ' match)' : ''));
    $('empty').hidden = list.length > 0;
    if (S.endedDirty) renderEnded();
    const ms = performance.now() - t0;
    stats.renders++; stats.renderMs += ms; stats.lastRenderMs = ms; stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
  }

  function renderEnded() {
    S.endedDirty = false;
    const tbody = $('ended').tBodies[0];
    const rows = [];
    for (let i = S.ended.length - 1; i >= 0; i--) {
      const e = S.ended[i];
      const tr = document.createElement('tr');
      tr.dataset.uuid = e.uuid;
      cell(tr).textContent = new Date(e.ended).toLocaleTimeString();
      cell(tr, 'uuid').textContent = e.uuid;
      cell(tr).textContent = e.channel || '';
      cell(tr).textContent = (e.caller || '?') + ' → ' + (e.callee || '?');
      cell(tr).textContent = e.trigger + (e.rule ? ' (' + e.rule + ')' : '');
      cell(tr).textContent = e.profile || '';
      const p = e.packets || [0, 0, 0], dr = e.drops || [0, 0, 0];
      cell(tr, 'num').textContent = p[0] + ' / ' + p[1] + (p[2] ? ' / ' + p[2] + ' mixed' : '');
      cell(tr, 'num').textContent = String(dr[0] + dr[1] + dr[2]);
      const reason = cell(tr, 'reason');
      reason.textContent = (e.state === 'failed' ? 'failed' : e.reason || e.state) + (e.error ? ': ' + e.error : '');
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function renderSwitches() {
    const ul = $('switches');
    ul.replaceChildren(...S.switches.map((s) => {
      const li = document.createElement('li');
      li.className = s.up ? 'up' : 'down';
      li.dataset.name = s.name;
      li.textContent = s.name + (s.up ? ' ● connected' : ' ○ down');
      return li;
    }));
  }

  // ---- actions, through the JSON API ----
  async function api(method, path, body) {
    const headers = authHeaders();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let err = '';
    if (!res.ok) { try { err = (await res.json()).error; } catch (e) { err = res.statusText; } }
    return { status: res.status, error: err };
  }

  async function stopFork(f) {
    if (!f) return;
    const r = await api('DELETE', '/v1/forks/' + encodeURIComponent(f.row.uuid));
    set($('start-result'), r.status === 204 ? 'stopping ' + f.row.uuid : 'stop refused (' + r.status + '): ' + r.error);
  }

  async function startFork(ev) {
    ev.preventDefault();
    const body = { uuid: $('start-uuid').value.trim() };
    const profile = $('start-profile').value.trim(), to = $('start-to').value.trim(), server = $('start-server').value.trim();
    if (profile) body.profile = profile;
    if (to) body.to = to.split(/[\s,;]+/).filter(Boolean);
    if (server) body.freeswitch = server;
    $('start-result').className = 'muted';
    set($('start-result'), 'starting…');
    const r = await api('POST', '/v1/forks', body);
    $('start-result').className = r.status === 201 ? 'up' : 'error';
    set($('start-result'), r.status === 201 ? 'started ' + body.uuid : 'refused (' + r.status + '): ' + r.error);
  }

  // ---- listen-in: 16-bit PCM over a WebSocket, played with Web Audio ----
  const L = { ws: null, ctx: null, at: 0, bytes: 0, fork: null };
  function startListening(f) {
    stopListening();
    if (!f) return;
    L.fork = f;
    const dirSel = $('listen-dir');
    for (const o of dirSel.options) o.disabled = o.value !== 'mixed' && !f.row.levels.includes(o.value.toUpperCase());
    if (dirSel.selectedOptions[0].disabled) dirSel.value = 'mixed';
    const path = '/v1/console/listen/' + encodeURIComponent(f.row.uuid) + '?dir=' + dirSel.value + (f.row.bug ? '&bug=' + encodeURIComponent(f.row.bug) : '');
    const ws = new WebSocket(wsURL(path), protocols());
    ws.binaryType = 'arraybuffer';
    L.ws = ws; L.bytes = 0; L.rate = 8000;
    L.ctx = L.ctx || new AudioContext();
    L.ctx.resume();
    $('listen-panel').hidden = false;
    set($('listen-what'), f.row.uuid + ' ' + (f.row.channel || ''));
    set($('listen-bytes'), 'connecting…');
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') { L.rate = JSON.parse(ev.data).rate; L.at = 0; return; }
      const pcm = new Int16Array(ev.data);
      L.bytes += ev.data.byteLength;
      set($('listen-bytes'), (L.bytes / 1024).toFixed(1) + ' KiB received');
      $('listen-bytes').dataset.bytes = String(L.bytes);
      if (!pcm.length) return;
      const buf = L.ctx.createBuffer(1, pcm.length, L.rate);
      const ch = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const src = L.ctx.createBufferSource();
      src.buffer = buf; src.connect(L.ctx.destination);
      const now = L.ctx.currentTime;
      if (L.at < now || L.at > now + 1) L.at = now + 0.1; // start, or catch up after a gap
      src.start(L.at);
      L.at += buf.duration;
    };
    ws.onclose = (ev) => { if (L.ws === ws) { L.ws = null; set($('listen-bytes'), 'stopped' + (ev.reason ? ': ' + ev.reason : '') + ', ' + (L.bytes / 1024).toFixed(1) + ' KiB'); } };
  }
  function stopListening() {
    if (L.ws) { const ws = L.ws; L.ws = null; ws.close(); }
    set($('listen-bytes'), '');
    $('listen-panel').hidden = true;
  }

  // ---- wiring ----
  $('login-form').addEventListener('submit', (ev) => { ev.preventDefault(); $('login-error').hidden = true; login($('token').value); });
  $('logout').addEventListener('click', () => { sessionStorage.removeItem('mf.token'); S.token = null; showLogin(''); });
  $('start-form').addEventListener('submit', startFork);
  $('filter').addEventListener('input', (ev) => { S.filter = ev.target.value.trim().toLowerCase(); S.page = 0; schedule(); });
  $('only-faults').addEventListener('change', (ev) => { S.onlyFaults = ev.target.checked; S.page = 0; schedule(); });
  $('prev').addEventListener('click', () => { if (S.page > 0) { S.page--; schedule(); } });
  $('next').addEventListener('click', () => { S.page++; schedule(); });
  $('listen-stop').addEventListener('click', stopListening);
  $('listen-dir').addEventListener('change', () => { if (L.fork) startListening(L.fork); });
  setInterval(schedule, 1000); // ages move without messages
  const saved = sessionStorage.getItem('mf.token');
  if (saved !== null) login(saved);
})();
