// The Outpost page: plays a title through steering's playback API with
// hls.js or dash.js (both steered by Content Steering), and shows which edge
// serves each segment and what cache-control says about every edge.
// Plain JS, no build step; served by steering from its binary.
'use strict';

const MAX_SEGMENTS = 20;
const MAX_LOG = 40;
const EDGE_POLL_MS = 1000;
const CONTROL_POLL_MS = 2000;
// A short buffer keeps segments flowing while the page is watched, so a
// failover shows within seconds instead of after a full buffer drains.
const BUFFER_SECONDS = 8;
const PALETTE = ['#4da3ff', '#f778ba', '#3fb950', '#e3b341', '#a371f7', '#39c5cf', '#ff7b72', '#8ddb8c'];

const state = {
  cfg: null,
  answer: null,        // the last POST /v1/play answer
  hostToEdge: new Map(), // "host:port" -> edge id (from the play answer and the reports)
  pathwayToEdge: new Map(),
  edges: [],           // the last GET /v1/edges
  edgeStates: new Map(), // id -> state, to log changes
  control: new Map(),  // id -> {running, pid} from the control API
  controlError: null,
  player: null,        // {kind, destroy()}
  servingEdge: null,
  priority: [],        // the last priority the page's own steering poll saw
  playerPriority: '',  // the last one the player fetched
  steeringTimer: null,
  segments: [],
};

const $ = (id) => document.getElementById(id);

// Build an element; children are nodes or text (never parsed as HTML).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clock(d = new Date()) {
  return d.toTimeString().slice(0, 8);
}

function log(text, kind = '') {
  const list = $('log-list');
  list.prepend(el('li', { class: kind }, el('time', {}, clock()), el('span', {}, text)));
  while (list.children.length > MAX_LOG) list.lastChild.remove();
}

async function getJSON(url, options = {}) {
  const resp = await fetch(url, { cache: 'no-store', ...options });
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const why = body && body.message ? `${body.error}: ${body.message}` : text.slice(0, 200);
    throw new Error(`${resp.status} ${why}`);
  }
  return body;
}

function loadScript(src) {
  return new Promise((resolve) => {
    const s = el('script', { src });
    s.onload = () => resolve(true);
    s.onerror = () => resolve(false);
    document.head.append(s);
  });
}

function colorOf(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function edgeChip(id) {
  return el('span', { class: 'chip', style: `--chip: ${colorOf(id)}` }, id);
}

function hostOf(url) {
  try { return new URL(url, location.href).host; } catch { return null; }
}

// URLs in messages: the edge's id for its host, the token cut.
function shortUrls(text) {
  return String(text).replace(/https?:\/\/[^\s/]+(\/t\/[^/\s]+)?(\/[^\s]*)?/g, (url, _tok, rest) => {
    const edge = edgeOfUrl(url);
    return `${edge || hostOf(url) || url}${(rest || '').replace(/^.*\/([^/]+\/[^/]+)$/, '…/$1')}`;
  });
}

function edgeOfUrl(url) {
  const host = hostOf(url);
  return (host && state.hostToEdge.get(host)) || host || '?';
}

function fmtBytes(n) {
  if (!Number.isFinite(n) || n <= 0) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(2)} MiB`;
}

// What an edge's Cache-Status says, shortened ("Outpost; hit" -> "hit").
function cacheStatusOf(headerText) {
  if (!headerText) return null;
  const line = headerText.split(/\r?\n/).find((l) => /^cache-status\s*:/i.test(l));
  if (!line) return null;
  const value = line.slice(line.indexOf(':') + 1).trim();
  const last = value.split(',').pop().trim();
  const params = last.split(';').slice(1).map((p) => p.trim()).filter(Boolean);
  return params.length ? params.join('; ') : value;
}

function note(html) {
  const n = $('video-note');
  if (!html) { n.hidden = true; n.replaceChildren(); return; }
  n.hidden = false;
  n.replaceChildren(...(Array.isArray(html) ? html : [html]));
}

// ---------- page config and players ----------

async function init() {
  $('play-form').addEventListener('submit', (e) => { e.preventDefault(); play(); });
  $('stop').addEventListener('click', () => { stopPlayer(); log('stopped'); });
  try {
    state.cfg = await getJSON('/v1/page-config');
  } catch (e) {
    log(`cannot read /v1/page-config: ${e.message}`, 'error');
    state.cfg = { id: 'steering', players: { hls: false, dash: false }, titles: [], control_url: null, steering_ttl: 10 };
  }
  const cfg = state.cfg;
  $('steering-id').textContent = cfg.id;
  const titles = $('titles');
  for (const t of cfg.titles) {
    const formats = [t.hls && 'HLS', t.dash && 'DASH'].filter(Boolean).join(' + ');
    titles.append(el('option', { value: t.id }, `${formats}${t.synthetic ? ' · synthetic bytes' : ''}`));
  }
  const first = cfg.titles.find((t) => !t.synthetic) || cfg.titles[0];
  $('title').value = first ? first.id : '';
  if (first && !first.hls && first.dash) $('format').value = 'dash';

  const loads = [];
  if (cfg.players.hls) loads.push(loadScript('/assets/hls.js').then((ok) => ok || log('/assets/hls.js did not load', 'error')));
  if (cfg.players.dash) loads.push(loadScript('/assets/dash.js').then((ok) => ok || log('/assets/dash.js did not load', 'error')));
  await Promise.all(loads);
  const missing = [!window.Hls && 'hls.js', !window.dashjs && 'dash.js'].filter(Boolean);
  if (missing.length) {
    note([
      el('b', {}, `${missing.join(' and ')} not installed. `),
      'Playback needs the player libraries: run ', el('code', {}, cfg.install || 'cd web && npm ci'),
      ' in the repository (or set ', el('code', {}, '[page] assets'), ') and reload. ',
      'Without them, Play still asks for a session and shows the answer.',
    ]);
    log(`players missing: ${missing.join(', ')} (${cfg.install || 'cd web && npm ci'})`, 'warn');
  } else {
    log(`players ready: hls.js ${window.Hls.version}, dash.js ${window.dashjs.Version || ''}`.trim(), 'good');
  }

  renderControlHelp();
  pollEdges();
  setInterval(pollEdges, EDGE_POLL_MS);
  if (cfg.control_url) {
    pollControl();
    setInterval(pollControl, CONTROL_POLL_MS);
  }
}

// ---------- play ----------

async function play() {
  const title = $('title').value.trim();
  const kind = $('format').value;
  if (!title) return;
  stopPlayer();
  $('play').disabled = true;
  let answer;
  try {
    answer = await getJSON('/v1/play', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title }),
    });
  } catch (e) {
    log(`POST /v1/play ${title}: ${e.message}`, 'error');
    renderSessionError(title, e.message);
    $('play').disabled = false;
    return;
  } finally {
    $('play').disabled = false;
  }
  state.answer = answer;
  state.pathwayToEdge.clear();
  for (const e of answer.edges) {
    const host = hostOf(e.base);
    if (host) state.hostToEdge.set(host, e.id);
    state.pathwayToEdge.set(e.pathway, e.id);
  }
  log(`play ${answer.title}: session for ${answer.client.ip} (${answer.client.source}), edges ${answer.edges.map((e) => e.id).join(' > ')}`, 'good');
  renderSession();
  startSteeringPoll();

  const synthetic = (state.cfg.titles.find((t) => t.id === answer.title) || {}).synthetic;
  const url = kind === 'hls' ? answer.hls : answer.dash;
  if (!url) {
    note(el('span', {}, `${answer.title} has no ${kind.toUpperCase()} manifest; pick the other format.`));
    log(`${answer.title} has no ${kind.toUpperCase()} manifest`, 'warn');
    return;
  }
  const lib = kind === 'hls' ? 'hls.js' : 'dash.js';
  if (!(kind === 'hls' ? window.Hls : window.dashjs)) {
    note([
      el('b', {}, `${lib} is not installed, so nothing plays; the session above is real. `),
      'Run ', el('code', {}, state.cfg.install || 'cd web && npm ci'), ' in the repository and reload, or open ',
      el('a', { href: url, target: '_blank' }, 'the session\'s manifest'), ' to read it.',
    ]);
    log(`${lib} is not installed: ${state.cfg.install || 'cd web && npm ci'}`, 'warn');
    return;
  }
  if (synthetic) {
    note(el('span', {}, `${answer.title} is a synthetic title: its segments are generated bytes, so they load from the edges but the browser cannot decode them.`));
  } else {
    note(null);
  }
  if (kind === 'hls') startHls(url);
  else startDash(url);
}

function stopPlayer() {
  if (state.player) {
    try { state.player.destroy(); } catch (e) { console.warn(e); }
    state.player = null;
  }
  if (state.steeringTimer) clearInterval(state.steeringTimer);
  state.steeringTimer = null;
  const v = $('video');
  v.removeAttribute('src');
  v.load();
}

function startHls(url) {
  const Hls = window.Hls;
  if (!Hls) { log('hls.js is not loaded', 'error'); return; }
  const video = $('video');
  if (!Hls.isSupported()) {
    log('this browser has no MediaSource: hls.js cannot play', 'error');
    return;
  }
  // Content Steering is on by default in hls.js when the playlist carries
  // #EXT-X-CONTENT-STEERING; the config key only makes it explicit.
  const hls = new Hls({
    contentSteeringController: Hls.DefaultConfig.contentSteeringController,
    maxBufferLength: BUFFER_SECONDS,
    maxMaxBufferLength: BUFFER_SECONDS * 2,
  });
  state.player = { kind: 'hls', destroy: () => hls.destroy() };
  const E = Hls.Events;
  hls.on(E.MANIFEST_PARSED, (_, d) => {
    log(`hls.js: ${d.levels.length} variants; pathways ${(hls.pathways || []).join(', ') || '—'}`);
  });
  hls.on(E.STEERING_MANIFEST_LOADED, (_, d) => {
    playerSteering('hls.js', d.steeringManifest['PATHWAY-PRIORITY'] || []);
  });
  hls.on(E.LEVEL_SWITCHED, (_, d) => {
    const l = hls.levels[d.level];
    if (l) $('now-rendition').textContent = renditionOf(l);
  });
  hls.on(E.FRAG_LOADED, (_, d) => {
    const f = d.frag;
    if (!f || f.sn === 'initSegment') return;
    const level = f.type === 'main' ? hls.levels[f.level] : null;
    const st = f.stats || d.stats || {};
    const ms = st.loading ? st.loading.end - st.loading.start : NaN;
    const nd = d.networkDetails;
    let headers = null;
    if (nd && typeof nd.getAllResponseHeaders === 'function') headers = nd.getAllResponseHeaders();
    else if (nd && nd.headers && typeof nd.headers.get === 'function') {
      const v = nd.headers.get('cache-status');
      headers = v ? `cache-status: ${v}` : null;
    }
    segment({
      url: f.url,
      pathway: (level && level.pathwayId) || (hls.levels[hls.currentLevel] || {}).pathwayId,
      rendition: f.type === 'main' ? (level ? renditionOf(level) : `level ${f.level}`) : f.type,
      bytes: st.loaded,
      ms,
      cache: cacheStatusOf(headers),
    });
  });
  hls.on(E.ERROR, (_, d) => {
    const status = d.response && d.response.code;
    const where = d.url || (d.frag && d.frag.url) || (d.context && d.context.url) || '';
    let msg = `hls.js ${d.fatal ? 'fatal ' : ''}${d.type}/${d.details}`;
    if (where) msg += ` from ${edgeOfUrl(where)}`;
    if (status !== undefined) msg += ` (status ${status}${status === 0 ? ': no answer — the edge is down, or TLS trust / CORS' : ''})`;
    log(msg, d.fatal ? 'error' : 'warn');
    if (d.fatal && d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => { /* autoplay may need a gesture; the Play click is one */ });
  log(`hls.js: loading ${url.replace(/\/v1\/session\/[^/]+/, '/v1/session/…')}`);
}

// A steering manifest the player fetched: logged when its order changes.
function playerSteering(who, priority) {
  const order = priority.map((x) => state.pathwayToEdge.get(x) || x).join(' > ');
  if (order !== state.playerPriority) log(`${who} steering: ${order}`, state.playerPriority ? 'warn' : '');
  state.playerPriority = order;
}

function renditionOf(level) {
  const kbps = level.bitrate ? `${Math.round(level.bitrate / 1000)} kb/s` : '';
  return [level.height ? `${level.height}p` : '', kbps].filter(Boolean).join(' ') || level.name || '?';
}

function startDash(url) {
  const dashjs = window.dashjs;
  if (!dashjs) { log('dash.js is not loaded', 'error'); return; }
  const video = $('video');
  const player = dashjs.MediaPlayer().create();
  // dash.js applies <ContentSteering> by default; say so explicitly so a
  // changed default cannot turn steering off silently.
  player.updateSettings({
    debug: { logLevel: dashjs.Debug ? dashjs.Debug.LOG_LEVEL_WARNING : 2 },
    streaming: {
      applyContentSteering: true,
      buffer: {
        bufferTimeAtTopQuality: BUFFER_SECONDS,
        bufferTimeAtTopQualityLongForm: BUFFER_SECONDS,
        stableBufferTime: BUFFER_SECONDS,
      },
    },
  });
  state.player = { kind: 'dash', destroy: () => player.reset() };
  const E = dashjs.MediaPlayer.events;
  player.on(E.FRAGMENT_LOADING_COMPLETED, (e) => {
    const r = e.request;
    if (!r || e.error || r.type !== 'MediaSegment') return;
    const ms = r.requestEndDate && r.requestStartDate ? r.requestEndDate - r.requestStartDate : NaN;
    let headers = null;
    try {
      const http = player.getDashMetrics().getCurrentHttpRequest(r.mediaType);
      if (http && http.url === r.url) headers = http._responseHeaders;
    } catch { /* metrics are best effort */ }
    segment({
      url: r.url,
      pathway: r.serviceLocation,
      rendition: dashRendition(player, r.mediaType, r.quality),
      bytes: r.bytesLoaded || (e.response && e.response.byteLength),
      ms,
      cache: cacheStatusOf(headers),
    });
  });
  if (E.CONTENT_STEERING_REQUEST_COMPLETED) {
    player.on(E.CONTENT_STEERING_REQUEST_COMPLETED, (e) => {
      const d = e.currentSteeringResponseData || {};
      playerSteering('dash.js', d.pathwayPriority || d.serviceLocationPriority || []);
    });
  }
  player.on(E.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType === 'video') $('now-rendition').textContent = dashRendition(player, 'video', e.newQuality);
  });
  player.on(E.ERROR, (e) => {
    const err = e.error || {};
    log(`dash.js error ${err.code || ''} ${shortUrls(err.message || e.event || '')}`.trim(), 'error');
  });
  player.initialize(video, url, true);
  log(`dash.js: loading ${url.replace(/\/v1\/session\/[^/]+/, '/v1/session/…')}`);
}

function dashRendition(player, mediaType, quality) {
  let info = null;
  try { info = (player.getBitrateInfoListFor(mediaType) || [])[quality]; } catch { /* not ready */ }
  if (!info) return `${mediaType} #${quality ?? '?'}`;
  if (mediaType !== 'video') return `${mediaType} ${Math.round(info.bitrate / 1000)} kb/s`;
  return renditionOf({ height: info.height, bitrate: info.bitrate });
}

// One loaded segment: the table, the "serving edge" and a log line when
// the serving edge changes.
function segment(s) {
  const edge = edgeOfUrl(s.url);
  if (edge !== state.servingEdge) {
    if (state.servingEdge) log(`segments now from ${edge} (was ${state.servingEdge})`, 'warn');
    state.servingEdge = edge;
  }
  $('now-edge').replaceChildren(edgeChip(edge));
  if (s.pathway) $('now-pathway').textContent = s.pathway;
  const name = (() => {
    try { return new URL(s.url).pathname.split('/').slice(-2).join('/'); } catch { return s.url; }
  })();
  state.segments.unshift({ at: new Date(), edge, name, ...s });
  state.segments.length = Math.min(state.segments.length, MAX_SEGMENTS);
  const body = $('segments-body');
  const row = el('tr', { class: 'fresh' },
    el('td', { class: 'mono' }, clock()),
    el('td', {}, edgeChip(edge)),
    el('td', { class: 'mono' }, s.pathway || '—'),
    el('td', {}, s.rendition || '—'),
    el('td', { class: 'mono', title: s.url.replace(/\/t\/[^/]+\//, '/t/…/') }, name),
    el('td', { class: 'num' }, fmtBytes(s.bytes)),
    el('td', { class: 'num' }, Number.isFinite(s.ms) ? Math.round(s.ms) : '—'),
    el('td', { class: 'mono' }, s.cache || el('span', { class: 'muted', title: 'the edge does not expose Cache-Status to this page (Access-Control-Expose-Headers)' }, 'n/a')));
  body.querySelector('tr.empty')?.remove();
  body.prepend(row);
  while (body.children.length > MAX_SEGMENTS) body.lastChild.remove();
  renderEdges();
}

// ---------- session and steering ----------

function renderSessionError(title, message) {
  $('session').replaceChildren(el('p', { class: 'facts' }, `POST /v1/play {"title":"${title}"} → `, el('b', {}, message)));
}

function renderSession() {
  const a = state.answer;
  if (!a) return;
  const c = a.client;
  const where = [c.country, c.asn && `AS${c.asn}`, c.site && `site ${c.site}`].filter(Boolean).join(', ');
  const rows = a.edges.map((e, i) => {
    const st = (state.edges.find((v) => v.edge_id === e.id) || {}).state || '?';
    return el('tr', {},
      el('td', { class: 'num' }, i + 1),
      el('td', {}, edgeChip(e.id)),
      el('td', {}, e.site),
      el('td', { class: 'mono' }, e.reason),
      el('td', { class: 'num' }, e.distance_km !== undefined ? `${e.distance_km} km` : '—'),
      el('td', { class: 'mono' }, e.pathway),
      el('td', {}, el('span', { class: `pill ${st}` }, st)));
  });
  $('session').replaceChildren(
    el('h3', {}, 'Session'),
    el('p', { class: 'facts' },
      'title ', el('b', {}, a.title), ' · client ', el('b', {}, c.ip), ` (${c.source}${where ? `: ${where}` : ''})`,
      ' · expires ', el('b', {}, new Date(a.expires_at * 1000).toLocaleTimeString()),
      ' · ', [a.hls && el('a', { href: a.hls, target: '_blank' }, 'master.m3u8'),
        a.dash && el('a', { href: a.dash, target: '_blank' }, 'manifest.mpd'),
        el('a', { href: a.steering, target: '_blank' }, 'steering')].filter(Boolean).flatMap((x, i) => (i ? [' · ', x] : [x]))),
    el('table', {},
      el('thead', {}, el('tr', {}, ['#', 'Edge', 'Site', 'Why', 'Distance', 'Pathway', 'State now'].map((h, i) => el('th', { class: i === 0 || i === 4 ? 'num' : '' }, h)))),
      el('tbody', {}, rows)));
}

// The page asks the session's steering URL itself (as the players do every
// TTL) so the priority shows even without a player.
function startSteeringPoll() {
  const a = state.answer;
  if (!a || !a.steering) return;
  const every = Math.max(2, Math.min(state.cfg.steering_ttl || 10, 5)) * 1000;
  const poll = async () => {
    try {
      const m = await getJSON(a.steering);
      const p = m['PATHWAY-PRIORITY'] || [];
      // With a player, its own fetches are logged (playerSteering).
      if (p.join() !== state.priority.join() && state.priority.length && !state.player) {
        log(`steering priority: ${p.join(' > ')}`, 'warn');
      }
      state.priority = p;
      $('now-priority').textContent = p.map((x) => state.pathwayToEdge.get(x) || x).join(' > ') || '—';
    } catch (e) {
      $('now-priority').textContent = `error: ${e.message}`;
    }
  };
  state.priority = [];
  state.playerPriority = '';
  poll();
  state.steeringTimer = setInterval(poll, every);
}

// ---------- edges ----------

function loadOf(r) {
  const frac = (a, b) => (b > 0 ? a / b : 0);
  // The same load the ranker uses: the highest of CPU, egress and connections.
  return Math.max(r.cpu_load || 0, frac(r.egress_gbps, r.capacity_gbps), frac(r.connections, r.max_connections));
}

async function pollEdges() {
  try {
    const views = await getJSON('/v1/edges');
    state.edges = Array.isArray(views) ? views : [];
    $('conn').className = 'conn ok';
    $('conn').textContent = 'live';
  } catch (e) {
    $('conn').className = 'conn bad';
    $('conn').textContent = 'steering unreachable';
    return;
  }
  for (const v of state.edges) {
    for (const u of (v.report && v.report.urls) || []) {
      const h = hostOf(u);
      if (h) state.hostToEdge.set(h, v.edge_id);
    }
    const before = state.edgeStates.get(v.edge_id);
    if (before && before !== v.state) {
      log(`${v.edge_id}: ${before} → ${v.state}${v.reasons.length ? ` (${v.reasons.join(', ')})` : ''}`, v.state === 'up' ? 'good' : 'error');
    }
    state.edgeStates.set(v.edge_id, v.state);
  }
  renderEdges();
  renderSession();
}

function renderEdges() {
  const body = $('edges-body');
  if (!state.edges.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'steering knows no edge yet (is cache-control reachable?)')));
    return;
  }
  const control = !!state.cfg.control_url;
  $('control-col').textContent = control ? 'Control' : '';
  const inSession = new Map((state.answer ? state.answer.edges : []).map((e, i) => [e.id, i + 1]));
  body.replaceChildren(...state.edges.map((v) => {
    const r = v.report;
    const load = r ? loadOf(r) : NaN;
    const ageMs = r && r.timestamp_ms ? Math.max(0, Date.now() - r.timestamp_ms) : v.last_report_age_ms;
    const age = ageMs === null || ageMs === undefined ? 'never' : ageMs < 10000 ? `${(ageMs / 1000).toFixed(1)} s ago` : `${Math.round(ageMs / 1000)} s ago`;
    const pct = Number.isFinite(load) ? Math.round(load * 100) : null;
    const rank = inSession.get(v.edge_id);
    return el('tr', { class: v.edge_id === state.servingEdge ? 'serving' : '' },
      el('td', {}, edgeChip(v.edge_id), rank ? el('span', { class: 'reasons', title: 'its place in the session' }, `#${rank}`) : null),
      el('td', {}, r ? r.site : '—'),
      el('td', {}, el('span', { class: `pill ${v.state}` }, v.state),
        v.reasons.length ? el('span', { class: 'reasons' }, v.reasons.join(', ')) : null),
      el('td', {}, pct === null ? '—' : el('span', { class: 'load' },
        el('span', { class: 'bar' }, el('i', { class: pct >= 90 ? 'hot' : pct >= 70 ? 'warn' : '', style: `width: ${Math.min(100, pct)}%` })),
        `${pct}%`)),
      el('td', { class: 'num' }, r ? r.requests_per_sec.toFixed(1) : '—'),
      el('td', { class: `age ${ageMs > 3000 ? 'stale' : ''}` }, age),
      el('td', {}, control ? controlCell(v.edge_id) : null));
  }));
}

// ---------- failover controls ----------

function renderControlHelp() {
  const help = $('control-help');
  if (state.cfg.control_url) {
    const parts = [el('p', {}, 'Stop an edge and watch cache-control mark it down, steering move it last, and the player fetch its next segments from the next edge.')];
    if (state.controlError) parts.push(el('p', {}, el('b', {}, 'Control API unreachable: '), `${state.cfg.control_url} (${state.controlError})`));
    help.replaceChildren(...parts);
    return;
  }
  help.replaceChildren(
    el('p', {}, el('b', {}, 'Failover by hand. '), 'Drain an edge through its admin listener (the ', el('code', {}, 'admin'), ' address in its config):'),
    el('p', {}, el('code', {}, 'curl -X POST http://<edge admin>/drain'), ' … and ', el('code', {}, '/undrain'), ' to bring it back;'),
    el('p', {}, 'or stop its process: SIGTERM announces draining first; ', el('code', {}, 'kill -9'), ' looks like a crash, marked down after missed reports.'),
    el('p', {}, 'Set ', el('code', {}, '[page] control_url'), ' in steering\'s config to a demo supervisor for Stop/Start buttons here.'));
}

function controlCell(id) {
  const c = state.control.get(id);
  if (!c) return el('span', { class: 'run' }, state.controlError ? '?' : 'not supervised');
  const act = async (verb, button) => {
    button.disabled = true;
    try {
      await getJSON(`${state.cfg.control_url}/v1/edges/${encodeURIComponent(id)}/${verb}`, { method: 'POST' });
      log(`${verb} ${id}: done`, verb === 'start' ? 'good' : 'warn');
    } catch (e) {
      log(`${verb} ${id}: ${e.message}`, 'error');
    }
    pollControl();
  };
  const title = c.running ? `running, pid ${c.pid ?? '?'}` : 'stopped';
  return c.running
    ? el('button', { class: 'small stop', title, onclick: (e) => act('stop', e.currentTarget) }, 'Stop')
    : el('button', { class: 'small start', title, onclick: (e) => act('start', e.currentTarget) }, 'Start');
}

async function pollControl() {
  try {
    const list = await getJSON(`${state.cfg.control_url}/v1/edges`);
    state.control = new Map((Array.isArray(list) ? list : []).map((e) => [e.id, e]));
    if (state.controlError) log('control API reachable again', 'good');
    state.controlError = null;
  } catch (e) {
    if (!state.controlError) log(`control API ${state.cfg.control_url}: ${e.message}`, 'error');
    state.controlError = e.message;
    state.control.clear();
  }
  renderControlHelp();
  renderEdges();
}

init();
