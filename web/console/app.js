// mediafork web console: plain JavaScript, no build step, no outside resource.
// The token lives in sessionStorage for this tab; it goes to this server only,
// in the Authorization header (fetch) or a WebSocket subprotocol, never in a URL.
// With no api.token (the API on loopback only) the console asks for nothing.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50, MAX_ENDED = 200, MIN_DB = -96, PENDING_MS = 15000;
  const S = {
    token: null, open: false, ws: null, retry: 0, timer: 0, clockSkew: 0,
    forks: new Map(), // fork row id -> {row, d, search}
    calls: new Map(), // uuid -> call row
    entries: [], dirty: true, // one per call (or fork without a known call), oldest first
    ended: [], endedDirty: true, switches: [], listenIn: false,
    page: 0, filter: '', show: 'all', frame: 0,
    profiles: [], pending: new Map(), // uuid -> when a fork was asked for from this page
    detail: null, // {uuid, opener, timer}
  };
  // Measured by the page itself (the browser tests read it).
  const stats = window.mfStats = { messages: 0, bytes: 0, renders: 0, renderMs: 0, maxRenderMs: 0, lastRenderMs: 0 };

  // ---- small helpers ----
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
  const set = (e, text) => { if (e.textContent !== text) e.textContent = text; };
  const now = () => Date.now() + S.clockSkew;
  const fmtAge = (ms) => { const s = Math.max(0, Math.floor(ms / 1000)); return s < 60 ? s + 's' : s < 3600 ? Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') : Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0'); };
  const fmtIn = (ms) => { const s = Math.max(0, Math.round(ms / 1000)); return s <= 0 ? 'now' : 'in ' + (s < 60 ? s + ' s' : Math.floor(s / 60) + ' min ' + (s % 60) + ' s'); };
  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');
  const who = (c, r) => ((c && c.caller) || (r && r.caller) || '?') + ' → ' + ((c && c.callee) || (r && r.callee) || '?');
  const TRIGGERS = { rule: 'rule', api: 'API', fs_cli: 'fs_cli', socket: 'dialplan socket', ingest: 'typed by hand' };
  const STATES = { connected: 'connected', connecting: 'connecting', auth_failed: 'auth failed', down: 'down' };
  const startedBy = (r) => (TRIGGERS[r.trigger] || r.trigger || '?') + (r.rule ? ' · ' + r.rule : '');

  // ---- authentication ----
  const b64url = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const authHeaders = () => (S.token ? { Authorization: 'Bearer ' + S.token } : {});
  const protocols = () => (S.token ? ['mediafork.v1', 'bearer.' + b64url(S.token)] : ['mediafork.v1']);
  const wsURL = (path) => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;

  function showLogin(msg) {
    closeFeed();
    stopListening();
    closeDetail();
    closeMenu();
    $('app').hidden = true; $('logout').hidden = true; $('mode').hidden = true; $('login').hidden = false;
    S.forks.clear(); S.calls.clear(); S.dirty = true; S.ended = []; S.switches = []; renderSwitches();
    $('login-error').hidden = !msg; $('login-error').textContent = msg || '';
    $('conn').textContent = ''; $('conn').className = 'pill conn';
    if (!msg) $('token').focus();
  }

  // login opens the console with token ('' for none). quiet: a first try
  // without a token, whose refusal only shows the login form.
  async function login(token, quiet) {
    S.token = token || null;
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
      showLogin(quiet ? '' : 'Wrong token: the server refused it (401).');
      return;
    }
    if (!res.ok) { showLogin('The server answered ' + res.status + '.'); return; }
    if (S.token) sessionStorage.setItem('mf.token', S.token);
    const text = await res.text();
    apply(JSON.parse(text), text.length);
    $('login').hidden = true; $('app').hidden = false;
    $('logout').hidden = S.open;
    $('mode').hidden = !S.open;
    set($('mode'), 'open · no token, loopback only');
    $('mode').title = 'api.token is empty: the API listens on loopback and answers only to loopback names; nothing to log in with.';
    openFeed();
    loadProfiles();
  }

  // ---- the live feed ----
  function openFeed() {
    closeFeed();
    const ws = new WebSocket(wsURL('/v1/console/feed'), protocols());
    S.ws = ws;
    set($('conn'), 'connecting…'); $('conn').className = 'pill conn';
    ws.onopen = () => { S.retry = 0; set($('conn'), 'live'); $('conn').className = 'pill conn up'; };
    ws.onmessage = (ev) => { apply(JSON.parse(ev.data), ev.data.length); };
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      set($('conn'), 'disconnected: reconnecting…'); $('conn').className = 'pill conn down';
      S.retry = Math.min(10000, S.retry ? S.retry * 2 : 500);
      S.timer = setTimeout(() => login(S.token || '', false), S.retry);
    };
  }
  function closeFeed() {
    clearTimeout(S.timer);
    if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  }

  function apply(m, size) {
    stats.messages++; stats.bytes += size;
    S.clockSkew = m.now - Date.now();
    if (m.t === 'full') { S.forks.clear(); S.calls.clear(); S.listenIn = !!m.listen_in; S.open = !!m.open; S.ended = []; S.dirty = true; }
    if (m.sw) { S.switches = m.sw; renderSwitches(); }
    for (const r of m.add || []) {
      const search = [r.uuid, r.channel, r.caller, r.callee, r.trigger, r.rule, r.profile, r.server, (r.endpoints || []).join(' ')].join(' ').toLowerCase();
      S.forks.set(r.id, { row: r, d: null, search });
      S.pending.delete(r.uuid);
      S.dirty = true;
    }
    for (const d of m.upd || []) { const f = S.forks.get(d[0]); if (f) f.d = d; }
    for (const id of m.del || []) { if (S.forks.delete(id)) S.dirty = true; }
    for (const c of m.cadd || []) { S.calls.set(c.uuid, c); S.dirty = true; }
    for (const uuid of m.cdel || []) { if (S.calls.delete(uuid)) { S.pending.delete(uuid); S.dirty = true; } }
    if (m.ended && m.ended.length) {
      S.ended.push(...m.ended);
      if (S.ended.length > MAX_ENDED) S.ended.splice(0, S.ended.length - MAX_ENDED);
      S.endedDirty = true;
    }
    schedule();
  }

  function schedule() { if (!S.frame) S.frame = requestAnimationFrame(render); }

  // entries joins calls and forks by uuid: one row per call, forked or not,
  // and one per fork whose call this mediafork does not know.
  function rebuild() {
    S.dirty = false;
    const by = new Map();
    for (const f of S.forks.values()) {
      let e = by.get(f.row.uuid);
      if (!e) { e = { uuid: f.row.uuid, call: null, fork: null, key: f.row.started }; by.set(f.row.uuid, e); }
      if (!e.fork || f.row.id < e.fork.row.id) e.fork = f;
    }
    for (const c of S.calls.values()) {
      let e = by.get(c.uuid);
      if (!e) { e = { uuid: c.uuid, call: null, fork: null }; by.set(c.uuid, e); }
      e.call = c; e.key = c.answered;
    }
    S.entries = Array.from(by.values()).sort((a, b) => (a.key - b.key) || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
    for (const e of S.entries) {
      const c = e.call || {};
      e.search = [e.uuid, c.caller, c.callee, c.channel, c.fs, e.fork ? e.fork.search : 'unforked'].join(' ').toLowerCase();
    }
  }

  // ---- the calls table: only the page in view, into rows made once ----
  const pool = [];
  function cell(tr, cls) { const td = document.createElement('td'); if (cls) td.className = cls; tr.appendChild(td); return td; }
  function meterCell(tr) {
    const td = cell(tr, 'lvl');
    const bar = el('span', 'meter'); const fill = el('i'); bar.appendChild(fill);
    const val = el('span');
    td.append(bar, val);
    return { td, fill, val };
  }
  function button(text, cls, label) { const b = el('button', cls, text); b.type = 'button'; if (label) b.setAttribute('aria-label', label); return b; }
  function poolRow(i) {
    if (pool[i]) return pool[i];
    const tr = el('tr');
    const r = { tr };
    r.call = cell(tr, 'call');
    r.who = button('', 'who'); r.id = el('span', 'id');
    r.call.append(r.who, r.id);
    r.fs = cell(tr, 'opt1'); r.channel = cell(tr, 'opt2'); r.trigger = cell(tr, 'opt1'); r.profile = cell(tr, 'opt1');
    r.eps = cell(tr, 'opt2'); r.age = cell(tr, 'num'); r.packets = cell(tr, 'num opt2'); r.drops = cell(tr, 'num opt2');
    r.m0 = meterCell(tr); r.m1 = meterCell(tr);
    r.verdictCell = cell(tr, 'audio'); r.verdict = el('span', 'verdict'); r.verdictCell.appendChild(r.verdict);
    const act = cell(tr, 'act');
    r.stop = button('Stop', 'stop danger'); r.listen = button('Listen', 'listen'); r.fork = button('Fork…', 'fork primary');
    r.fork.setAttribute('aria-haspopup', 'dialog');
    act.append(r.fork, r.stop, r.listen);
    r.who.onclick = () => openDetail(r.entry.uuid, r.who);
    r.stop.onclick = () => stopFork(r.entry);
    r.listen.onclick = () => r.entry.fork && startListening(r.entry.fork);
    r.fork.onclick = () => openMenu(r.fork, r.entry);
    pool[i] = r;
    return r;
  }
  function levelOf(f, dir) {
    const i = f.row.levels.indexOf(dir);
    if (i < 0 || i > 1 || !f.d) return null;
    return { db: f.d[7 + i], silent: (f.d[9] >> i) & 1 };
  }
  function fault(f) {
    if (!f || !f.d) return '';
    if (f.d[9] & 4) return ''; // paused: silent on purpose
    const n = f.row.levels.length, s0 = f.d[9] & 1, s1 = (f.d[9] >> 1) & 1;
    if (n === 2 && s0 && s1) return 'silent';
    if (n === 2 && (s0 || s1)) return 'one-way: ' + (s0 ? f.row.levels[0] : f.row.levels[1]) + ' silent';
    if (n === 1 && s0) return 'silent';
    return '';
  }
  function pending(uuid) {
    const at = S.pending.get(uuid);
    if (at && Date.now() - at > PENDING_MS) { S.pending.delete(uuid); return false; }
    return !!at;
  }
  // verdict is what the Audio column says of an entry, and its class.
  function verdict(e) {
    const f = e.fork;
    if (f) {
      const flt = fault(f);
      if (flt) return [flt, 'bad'];
      if (f.d && (f.d[9] & 4)) return ['paused', 'idle'];
      return f.d ? ['ok', 'ok'] : ['starting…', 'warn'];
    }
    if (pending(e.uuid)) return ['starting…', 'warn'];
    return ['not forked', 'idle'];
  }
  function setMeter(m, lvl, label) {
    if (!lvl) { set(m.val, '–'); m.fill.style.width = '0'; m.td.classList.remove('silent'); m.td.dataset.db = ''; m.td.title = ''; return; }
    const pct = Math.max(0, Math.min(100, (lvl.db - MIN_DB) * 100 / -MIN_DB));
    m.fill.style.width = pct.toFixed(0) + '%';
    set(m.val, lvl.db <= MIN_DB ? '−∞' : String(lvl.db));
    m.td.dataset.db = String(lvl.db);
    m.td.classList.toggle('silent', !!lvl.silent);
    m.td.title = label + ' ' + lvl.db + ' dBFS' + (lvl.silent ? ': silent' : '');
  }
  function matches(e) {
    if (S.filter && !e.search.includes(S.filter)) return false;
    switch (S.show) {
      case 'forked': return !!e.fork;
      case 'unforked': return !e.fork;
      case 'faults': return !!fault(e.fork);
    }
    return true;
  }

  function render() {
    S.frame = 0;
    const t0 = performance.now();
    if (S.dirty) rebuild();
    const t = now();
    const list = [];
    let faults = 0, unforked = 0;
    for (const e of S.entries) {
      if (!e.fork) unforked++;
      else if (fault(e.fork)) faults++;
      if (matches(e)) list.push(e);
    }
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (S.page >= pages) S.page = pages - 1;
    const start = S.page * PAGE, shown = list.slice(start, start + PAGE);
    const tbody = $('live').tBodies[0];
    shown.forEach((e, i) => {
      const r = poolRow(i), f = e.fork, c = e.call, row = f ? f.row : null, d = (f && f.d) || [];
      r.entry = e;
      const key = e.uuid + '/' + (row ? row.id : '') + '/' + (c ? 'c' : '');
      if (r.key !== key) {
        r.key = key;
        r.tr.dataset.uuid = e.uuid; r.tr.dataset.id = row ? String(row.id) : '';
        set(r.who, who(c, row)); r.who.setAttribute('aria-label', 'Details of the call ' + who(c, row));
        set(r.id, e.uuid); r.id.title = e.uuid;
        set(r.fs, (c && c.fs) || (row && row.server) || ''); r.fs.title = row ? row.module + (row.bug ? ', bug ' + row.bug : '') : '';
        set(r.channel, (row && row.channel) || (c && c.channel) || '');
        set(r.trigger, row ? startedBy(row) : '');
        set(r.profile, (row && row.profile) || '');
        set(r.eps, row ? row.endpoints.join(', ') : ''); r.eps.title = row ? row.endpoints.join('\n') : '';
      }
      r.listen.hidden = !f || !S.listenIn;
      r.stop.hidden = !f && !pending(e.uuid);
      r.fork.hidden = !!f || pending(e.uuid);
      set(r.age, fmtAge(t - (c ? c.answered : row.started)));
      set(r.packets, f ? (d[1] || 0) + ' / ' + (d[2] || 0) + (d[3] ? ' / ' + d[3] + ' mixed' : '') : '');
      set(r.drops, f ? String((d[4] || 0) + (d[5] || 0) + (d[6] || 0)) : '');
      setMeter(r.m0, f ? levelOf(f, 'RX') || levelOf(f, 'MIXED') : null, 'RX');
      setMeter(r.m1, f ? levelOf(f, 'TX') : null, 'TX');
      const [vtext, vcls] = verdict(e);
      set(r.verdict, vtext); r.verdict.className = 'verdict ' + vcls; r.verdictCell.title = vtext;
      r.tr.classList.toggle('fault', vcls === 'bad');
      r.tr.classList.toggle('unforked', !f);
      r.tr.classList.toggle('selected', !!S.detail && S.detail.uuid === e.uuid);
      if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
    });
    while (tbody.children.length > shown.length) tbody.lastChild.remove();
    set($('live-count'), String(S.forks.size));
    set($('call-count'), String(S.entries.length));
    set($('unforked-count'), String(unforked));
    $('fault-count').hidden = !faults; set($('fault-count'), faults + ' silent / one-way');
    set($('page'), (S.page + 1) + ' / ' + pages + (list.length !== S.entries.length ? ' (' + list.length + ' match)' : ''));
    $('empty').hidden = list.length > 0;
    set($('empty'), S.entries.length ? 'No call matches.' : 'No live call on the connected switches.');
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
      const tr = el('tr');
      tr.dataset.uuid = e.uuid;
      cell(tr).textContent = fmtTime(e.ended);
      const c = cell(tr, 'call');
      c.append(el('span', 'who', who(null, e)), el('span', 'id', e.uuid));
      cell(tr, 'opt2').textContent = e.channel || '';
      cell(tr, 'opt1').textContent = startedBy(e);
      cell(tr, 'opt1').textContent = e.profile || '';
      const p = e.packets || [0, 0, 0], dr = e.drops || [0, 0, 0];
      cell(tr, 'num').textContent = p[0] + ' / ' + p[1] + (p[2] ? ' / ' + p[2] + ' mixed' : '');
      cell(tr, 'num opt2').textContent = String(dr[0] + dr[1] + dr[2]);
      const reason = cell(tr, 'reason');
      reason.textContent = (e.state === 'failed' ? 'failed' : e.reason || e.state) + (e.error ? ': ' + e.error : '');
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    $('ended-section').hidden = rows.length === 0;
  }

  // ---- switches: a chip each, and an alert for each one not connected ----
  function renderSwitches() {
    const t = now();
    $('switches').replaceChildren(...S.switches.map((s) => {
      const li = el('li', s.up ? 'up' : s.state === 'connecting' ? 'connecting' : 'down');
      li.dataset.name = s.name;
      li.append(el('span', 'nm', s.name), el('span', 'st', STATES[s.state] || s.state));
      // In a cluster: who leads the switch (applies its rules, fs_cli, resync).
      const role = s.leads ? 'leads' : s.leader ? 'standby · ' + s.leader + ' leads' : '';
      if (role) li.append(el('span', 'role', role));
      li.title = s.name + (s.addr ? ' (' + s.addr + ')' : '') + ': ' + (STATES[s.state] || s.state) + (s.reason ? ' — ' + s.reason : '') +
        (role ? '; this instance ' + (s.leads ? 'leads it' : 'stands by, ' + s.leader + ' leads it') : '');
      return li;
    }));
    $('switch-alerts').replaceChildren(...S.switches.filter((s) => !s.up).map((s) => {
      const a = el('div', s.state === 'connecting' && !s.reason ? 'alert warn' : 'alert');
      a.dataset.name = s.name;
      a.append(el('b', '', s.name), s.addr ? ' (' + s.addr + ')' : '', ' is not connected' + (s.reason ? ': ' + s.reason : s.state === 'connecting' ? ': connecting…' : '') + '.');
      if (s.next) a.append(' ', el('span', 'when', s.next - t > 0 ? 'Next try ' + fmtIn(s.next - t) + '.' : 'Trying now.'));
      if (s.since) a.append(' ', el('span', 'muted', '(since ' + fmtTime(s.since) + ')'));
      return a;
    }));
    const sel = $('start-server'), keep = sel.value;
    sel.replaceChildren(new Option('first connected', ''), ...S.switches.map((s) => new Option(s.name, s.name)));
    sel.value = keep;
  }

  // ---- actions, through the JSON API ----
  async function api(method, path, body) {
    const headers = authHeaders();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { status: 0, error: 'cannot reach mediafork: ' + e.message };
    }
    let err = '', data = null;
    if (!res.ok) { try { err = (await res.json()).error; } catch (e) { err = res.statusText; } }
    else if (res.status !== 204) { try { data = await res.json(); } catch (e) { data = null; } }
    return { status: res.status, error: err, data };
  }

  let noticeTimer = 0;
  function notify(text, bad) {
    const n = $('notice');
    n.textContent = text; n.className = 'notice' + (bad ? ' bad' : ''); n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, bad ? 15000 : 6000);
  }

  async function loadProfiles() {
    const r = await api('GET', '/v1/profiles');
    if (r.status !== 200 || !r.data) return;
    S.profiles = r.data.profiles || [];
    const sel = $('start-profile'), keep = sel.value;
    sel.replaceChildren(new Option('(none)', ''), ...S.profiles.map((p) => new Option(p.name, p.name)));
    sel.value = keep;
  }

  async function stopFork(e) {
    if (!e) return;
    const r = await api('DELETE', '/v1/forks/' + encodeURIComponent(e.uuid));
    S.pending.delete(e.uuid);
    if (r.status === 204) notify('Stopping the fork of ' + who(e.call, e.fork && e.fork.row) + ' (' + e.uuid + ').');
    else notify('Stop refused (' + r.status + '): ' + r.error, true);
    set($('start-result'), r.status === 204 ? 'stopping ' + e.uuid : 'stop refused (' + r.status + '): ' + r.error);
    schedule();
  }

  async function forkCall(e, profile) {
    const body = { uuid: e.uuid, profile };
    if (e.call && e.call.fs) body.freeswitch = e.call.fs;
    S.pending.set(e.uuid, Date.now());
    schedule();
    const r = await api('POST', '/v1/forks', body);
    if (r.status === 201) {
      notify('Forked ' + who(e.call, null) + ' (' + e.uuid + ') with the profile ' + profile + '.');
    } else {
      S.pending.delete(e.uuid);
      notify('Fork refused (' + r.status + '): ' + r.error, true);
    }
    schedule();
    if (S.detail && S.detail.uuid === e.uuid) refreshDetail();
  }

  async function startFork(ev) {
    ev.preventDefault();
    const body = { uuid: $('start-uuid').value.trim() };
    const profile = $('start-profile').value, to = $('start-to').value.trim(), server = $('start-server').value;
    if (profile) body.profile = profile;
    if (to) body.to = to.split(/[\s,;]+/).filter(Boolean);
    if (server) body.freeswitch = server;
    $('start-result').className = 'muted';
    set($('start-result'), 'starting…');
    const r = await api('POST', '/v1/forks', body);
    $('start-result').className = r.status === 201 ? 'up' : 'error';
    set($('start-result'), r.status === 201 ? 'started ' + body.uuid : 'refused (' + r.status + '): ' + r.error);
  }

  // ---- the Fork menu: the configured profiles ----
  const menu = { opener: null, entry: null };
  function profileButtons(e, onPick) {
    if (!S.profiles.length) return [el('p', 'muted', 'No profile in the config (profiles:). Fork by uuid to ad-hoc destinations below.')];
    return S.profiles.map((p) => {
      const b = button('', 'profile');
      b.dataset.profile = p.name;
      b.append(el('b', '', p.name), el('span', '', p.description));
      b.onclick = () => onPick(p.name);
      return b;
    });
  }
  function openMenu(opener, e) {
    closeMenu();
    menu.opener = opener; menu.entry = e;
    const m = $('fork-menu');
    set($('fork-menu-title'), 'Fork ' + who(e.call, null) + ' with the profile:');
    $('fork-menu-list').replaceChildren(...profileButtons(e, (name) => { closeMenu(true); forkCall(e, name); }));
    m.hidden = false;
    const r = opener.getBoundingClientRect(), w = m.offsetWidth;
    const left = Math.max(8, Math.min(r.right - w, document.documentElement.clientWidth - w - 8));
    let top = r.bottom + 4;
    if (top + m.offsetHeight > window.innerHeight - 8) top = Math.max(8, r.top - m.offsetHeight - 4);
    m.style.left = (left + window.scrollX) + 'px';
    m.style.top = (top + window.scrollY) + 'px';
    const first = m.querySelector('.menu-list button') || $('fork-menu-cancel');
    first.focus();
    if (!S.profiles.length) loadProfiles().then(() => { if (menu.entry === e && S.profiles.length) openMenu(opener, e); });
  }
  function closeMenu(keepFocus) {
    const m = $('fork-menu');
    if (m.hidden) return;
    m.hidden = true;
    if (!keepFocus && menu.opener && document.body.contains(menu.opener)) menu.opener.focus();
    menu.opener = null; menu.entry = null;
  }

  // ---- a call's detail ----
  function entryOf(uuid) {
    if (S.dirty) rebuild();
    return S.entries.find((e) => e.uuid === uuid) || null;
  }
  function openDetail(uuid, opener) {
    closeMenu(true);
    if (S.detail) clearInterval(S.detail.timer);
    S.detail = { uuid, opener, timer: setInterval(refreshDetail, 1000), last: null };
    $('detail').hidden = false;
    document.body.classList.add('with-detail');
    set($('detail-title'), '…');
    refreshDetail().then(() => $('detail-title').focus());
    schedule();
  }
  function closeDetail() {
    if (!S.detail) return;
    clearInterval(S.detail.timer);
    const opener = S.detail.opener;
    S.detail = null;
    $('detail').hidden = true;
    document.body.classList.remove('with-detail');
    if (opener && document.body.contains(opener) && !$('app').hidden) opener.focus();
    schedule();
  }
  async function refreshDetail() {
    const dt = S.detail;
    if (!dt) return;
    const e = entryOf(dt.uuid);
    if (!e) { renderGone(dt); return; }
    let data = null;
    if (e.fork) {
      const r = await api('GET', '/v1/console/forks/' + e.fork.row.id);
      if (S.detail !== dt) return;
      if (r.status === 200) data = r.data;
    }
    renderDetail(e, data);
  }
  function kv(pairs) {
    const dl = el('dl', 'kv');
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '') continue;
      const dd = el('dd');
      if (v instanceof Node) dd.appendChild(v); else dd.textContent = String(v);
      dl.append(el('dt', '', k), dd);
    }
    return dl;
  }
  function section(title, ...children) { const s = el('section'); s.append(el('h3', '', title), ...children); return s; }
  function miniTable(caption, heads, rows) {
    const t = el('table', 'mini');
    const cap = el('caption', 'sr-only', caption); t.appendChild(cap);
    const thead = el('thead'), tr = el('tr');
    for (const [h, cls] of heads) { const th = el('th', cls || '', h); th.scope = 'col'; tr.appendChild(th); }
    thead.appendChild(tr); t.appendChild(thead);
    const tb = el('tbody');
    for (const r of rows) {
      const row = el('tr');
      if (r.error) { row.className = 'err'; const td = el('td', '', r.error); td.colSpan = heads.length; row.appendChild(td); }
      else r.forEach((v, i) => row.appendChild(el('td', heads[i][1] || '', v === undefined || v === null ? '—' : String(v))));
      tb.appendChild(row);
    }
    t.appendChild(tb);
    return t;
  }
  function renderGone(dt) {
    set($('detail-title'), 'Call ended');
    $('detail-body').replaceChildren(el('p', 'muted', 'The call ' + dt.uuid + ' is no longer live. Its fork, if it had one, is in “Recently ended”.'));
  }
  function renderDetail(e, d) {
    const c = e.call, f = e.fork, row = f ? f.row : null;
    set($('detail-title'), who(c, row));
    const [vtext, vcls] = verdict(e);
    const v = el('span', 'verdict ' + vcls, vtext);
    const body = [];
    body.push(section('Call', kv([
      ['Audio', v], ['Call uuid', e.uuid], ['Switch', (c && c.fs) || (row && row.server)],
      ['Caller → callee', who(c, row)], ['Channel', c && c.channel], ['Direction', c && c.dir],
      ['Answered', c ? new Date(c.answered).toLocaleString() + ' (' + fmtAge(now() - c.answered) + ' ago)' : ''],
    ])));
    if (!f) {
      const list = el('div', 'profiles');
      list.append(...profileButtons(e, (name) => forkCall(e, name)));
      body.push(section(pending(e.uuid) ? 'Fork starting…' : 'Not forked: fork it with a profile', list));
      $('detail-body').replaceChildren(...body);
      return;
    }
    const acts = el('div', 'actions');
    const stop = button('Stop the fork', 'danger'); stop.onclick = () => stopFork(e);
    acts.appendChild(stop);
    if (S.listenIn) { const l = button('Listen'); l.onclick = () => startListening(f); acts.appendChild(l); }
    body.push(acts);
    body.push(section('Started', kv([
      ['At', new Date(row.started).toLocaleString() + ' (' + fmtAge(now() - row.started) + ' ago)'],
      ['By', startedBy(row)], ['Profile', row.profile || '(none: ad-hoc destinations)'],
      ['Module', row.module + (row.bug ? ', bug ' + row.bug : '')],
    ])));
    if (!d) { $('detail-body').replaceChildren(...body); return; }
    // Levels over the last minute.
    const canvas = el('canvas', 'chart');
    const legend = el('div', 'legend');
    const lv = d.now || [];
    const hist = d.history || { dirs: [], values: [] };
    const label = [];
    hist.dirs.forEach((dir, i) => {
      const vals = (hist.values[i] || []).filter((x) => x !== null);
      const cur = lv[i] ? lv[i].dbfs : null;
      const txt = dir + ' ' + (cur === null ? '–' : cur <= MIN_DB ? '−∞' : Math.round(cur)) + ' dBFS' + (lv[i] && lv[i].silent ? ', silent' : '') +
        (vals.length ? ' (last ' + vals.length + ' s: ' + Math.min(...vals) + ' to ' + Math.max(...vals) + ')' : '');
      const s = el('span', dir === 'TX' ? 'tx' : 'rx'); s.append(el('i'), txt);
      legend.appendChild(s); label.push(txt);
    });
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', 'Levels over the last minute: ' + label.join('; '));
    body.push(section('Levels, last minute', canvas, legend));
    // Where the audio goes: each endpoint, then each stream with its identity.
    const eps = [];
    for (const p of d.endpoint_detail || []) {
      eps.push([(p.protocol === 'tlv' ? '' : p.protocol + '://') + p.address, p.protocol, p.format,
        p.packets === undefined ? null : p.packets, p.drops === undefined ? null : p.drops]);
      if (p.last_error) eps.push({ error: 'last error: ' + p.last_error });
    }
    body.push(section('Endpoints', miniTable('The fork\'s endpoints', [['Endpoint', 'w40'], ['Protocol', 'w15'], ['Format', 'w30'], ['Packets', 'num'], ['Drops', 'num']], eps)));
    const streams = (d.outputs || []).map((o) => [(o.identities || []).join('; '), o.protocol, o.format, o.endpoints.join(', ')]);
    body.push(section('Streams', miniTable('The fork\'s streams and their identities', [['Identity', 'w30'], ['Protocol', 'w15'], ['Format', 'w30'], ['Endpoints']], streams)));
    const tb = d.talkback;
    if (tb) { // what receivers send back into the call
      const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
      const rows = [['Into the switch', tb.injection + ', ' + tb.rate + ' Hz'], ['Queued', secs(tb.queued_ms)],
        ['Played', secs(tb.played_ms)], ['Cleared', secs(tb.cleared_ms)], ['Refused', secs(tb.refused_ms) + ' (' + tb.refused + ' messages)'],
        ['Last mark', tb.last_mark || 'none']];
      for (const s of tb.sources || []) rows.push(['Speaking to ' + s.to, s.endpoint + ' · queued ' + secs(s.queued_ms) + ' · ' + s.marks_pending + ' marks pending']);
      for (const l of tb.legs || []) rows.push(['Leg ' + l.leg, l.player + ' ' + (l.state || '') + (l.channel ? ' · ' + l.channel : '') + (l.in_flight_ms ? ' · in flight ' + secs(l.in_flight_ms) : '')]);
      body.push(section('Talk-back', kv(rows)));
    }
    const po = d.packets_out || {};
    body.push(section('Counters', kv([
      ['Packets out', Object.keys(po).map((k) => k + ' ' + po[k]).join(' · ')],
      ['Drops', d.drops + (d.send_errors ? ' (' + d.send_errors + ' send errors)' : '')],
      ['Frames in', d.frames_in + ' (' + Math.round(d.bytes_in / 1024) + ' KiB)'],
      ['Last error', d.last_error || 'none'],
    ])));
    const md = d.metadata || {};
    body.push(section('Metadata (signaling)', kv([['channel_id', md.channel_id || ''], ['exten', md.exten || ''], ['caller_id', md.caller_id || ''], ['called_id', md.called_id || '']])));
    const p = d.params || {};
    body.push(section('Format of the bug', kv([['Mix', p.mix], ['Rate', p.rate + ' Hz'], ['Encoding', p.encoding], ['Frame', p.frame_ms + ' ms'],
      ['Ad-hoc destinations', (d.to || []).join(', ')]])));
    $('detail-body').replaceChildren(...body);
    drawChart(canvas, hist);
  }
  function drawChart(canvas, hist) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth || 500, h = canvas.clientHeight || 140;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    const g = canvas.getContext('2d');
    g.scale(dpr, dpr);
    const css = getComputedStyle(document.documentElement);
    const y = (db) => 6 + (h - 20) * (Math.min(0, Math.max(MIN_DB, db)) / MIN_DB);
    g.font = '10px ' + css.getPropertyValue('--font');
    g.fillStyle = css.getPropertyValue('--muted');
    g.strokeStyle = css.getPropertyValue('--line');
    g.lineWidth = 1;
    for (const db of [0, -20, -40, -60, -80]) {
      g.setLineDash(db === -60 ? [4, 3] : []);
      g.beginPath(); g.moveTo(30, y(db) + .5); g.lineTo(w - 4, y(db) + .5); g.stroke();
      g.fillText(String(db), 4, y(db) + 3);
    }
    g.setLineDash([]);
    g.fillText('−60: silence', w - 70, y(-60) - 3);
    const step = (w - 34) / 59;
    hist.dirs.forEach((dir, i) => {
      const vals = hist.values[i] || [];
      g.strokeStyle = css.getPropertyValue(dir === 'TX' ? '--tx' : '--rx');
      g.lineWidth = dir === 'TX' ? 1.5 : 3.5; // RX under TX: both show where they meet
      g.beginPath();
      let pen = false;
      const off = 60 - vals.length;
      vals.forEach((v, k) => {
        if (v === null) { pen = false; return; }
        const x = 30 + (off + k) * step, yy = y(v);
        if (pen) g.lineTo(x, yy); else g.moveTo(x, yy);
        pen = true;
      });
      g.stroke();
    });
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
      const t = L.ctx.currentTime;
      if (L.at < t || L.at > t + 1) L.at = t + 0.1; // start, or catch up after a gap
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
  $('login-form').addEventListener('submit', (ev) => { ev.preventDefault(); $('login-error').hidden = true; login($('token').value, false); });
  $('logout').addEventListener('click', () => { sessionStorage.removeItem('mf.token'); S.token = null; showLogin(''); });
  $('start-form').addEventListener('submit', startFork);
  $('filter').addEventListener('input', (ev) => { S.filter = ev.target.value.trim().toLowerCase(); S.page = 0; schedule(); });
  for (const b of document.querySelectorAll('.seg button')) {
    b.addEventListener('click', () => {
      S.show = b.dataset.show; S.page = 0;
      for (const o of document.querySelectorAll('.seg button')) o.setAttribute('aria-pressed', String(o === b));
      schedule();
    });
  }
  $('prev').addEventListener('click', () => { if (S.page > 0) { S.page--; schedule(); } });
  $('next').addEventListener('click', () => { S.page++; schedule(); });
  $('listen-stop').addEventListener('click', stopListening);
  $('listen-dir').addEventListener('change', () => { if (L.fork) startListening(L.fork); });
  $('detail-close').addEventListener('click', closeDetail);
  $('fork-menu-cancel').addEventListener('click', () => closeMenu());
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      if (!$('fork-menu').hidden) { closeMenu(); ev.preventDefault(); } else if (S.detail) { closeDetail(); ev.preventDefault(); }
      return;
    }
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test((ev.target && ev.target.tagName) || '');
    if (ev.key === '/' && !typing && !$('app').hidden) { ev.preventDefault(); $('filter').focus(); }
  });
  document.addEventListener('mousedown', (ev) => {
    if (!$('fork-menu').hidden && !$('fork-menu').contains(ev.target) && ev.target !== menu.opener) closeMenu(true);
  });
  $('fork-menu').addEventListener('focusout', (ev) => {
    if (ev.relatedTarget && !$('fork-menu').contains(ev.relatedTarget)) closeMenu(true);
  });
  setInterval(() => { schedule(); if (S.switches.some((s) => !s.up)) renderSwitches(); }, 1000); // ages and countdowns move without messages
  const saved = sessionStorage.getItem('mf.token');
  login(saved || '', saved === null);
})();
