// Real players against a running `outpost demo`, driven through the demo's
// own page in Debian's Chromium (headless, playwright-core):
//
//   node play.mjs STATE_DIR/endpoints.json
//
//   1. hls.js over HTTP/3: Chromium is forced onto QUIC for the edges
//      (--origin-to-force-quic-on) and trusts their leaves by SPKI
//      (--ignore-certificate-errors-spki-list); plays >= 8 s of the real
//      title, checked in the edges' access logs (proto="h3").
//   2. dash.js over HTTPS (QUIC off): the same, proto="h1"/"h2".
//   3. For each: the serving edge's process is killed (SIGKILL) and the
//      player must go on from another edge: media time keeps advancing,
//      new segments come from a different edge, no fatal player error.
//      The edge is started again through the demo's control API.
//
// Prints `ok - NAME` / `FAIL - NAME: why` lines (the shell counts them) and
// exits non-zero when a check failed.

import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const endpointsPath = process.argv[2];
if (!endpointsPath) {
  console.error('usage: node play.mjs STATE_DIR/endpoints.json');
  process.exit(2);
}
const endpoints = JSON.parse(fs.readFileSync(endpointsPath, 'utf8'));
const stateDir = path.dirname(endpointsPath);
const certsDir = path.dirname(endpoints.ca_cert);
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const control = process.env.DEMO_CONTROL || 'http://127.0.0.1:6090';
const title = process.env.DEMO_TITLE || 'demo';
const shots = process.env.SHOTS_DIR || '';

let failed = 0;
let passed = 0;
const ok = (name) => { passed++; console.log(`ok - ${name}`); };
const fail = (name, why) => { failed++; console.log(`FAIL - ${name}: ${why}`); };
const check = (cond, name, why) => (cond ? ok(name) : fail(name, why));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// SPKI pins (base64 SHA-256 of the SubjectPublicKeyInfo) of every leaf the
// demo generated: the edges' and steering's (the page's origin).
function spkiPins() {
  return fs.readdirSync(certsDir)
    .filter((f) => f.endsWith('.crt') && f !== 'ca.crt')
    .map((f) => {
      const cert = new X509Certificate(fs.readFileSync(path.join(certsDir, f)));
      const der = cert.publicKey.export({ type: 'spki', format: 'der' });
      return createHash('sha256').update(der).digest('base64');
    });
}

const edgeHosts = endpoints.edges.map((e) => new URL(e.url).host);
const edgeById = new Map(endpoints.edges.map((e) => [e.id, e]));

async function launch(quic) {
  const args = [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--mute-audio',
    `--ignore-certificate-errors-spki-list=${spkiPins().join(',')}`,
  ];
  if (quic) args.push('--enable-quic', `--origin-to-force-quic-on=${edgeHosts.join(',')}`);
  else args.push('--disable-quic');
  return chromium.launch({ executablePath: chromiumPath, headless: true, args });
}

// Access-log lines of one edge for the title's segments, from byte `from`.
function accessLines(edgeId, from = 0) {
  const file = path.join(stateDir, 'logs', `${edgeId}.log`);
  let text = '';
  try {
    const fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    fs.closeSync(fd);
    text = buf.toString('utf8');
  } catch { /* no log yet */ }
  return text.split('\n').filter((l) => l.includes(' access: ') && l.includes(`key=/vod/${title}/`) && l.includes('.m4s'));
}
function logSizes() {
  const m = new Map();
  for (const e of endpoints.edges) {
    try { m.set(e.id, fs.statSync(path.join(stateDir, 'logs', `${e.id}.log`)).size); } catch { m.set(e.id, 0); }
  }
  return m;
}

async function media(page) {
  return page.evaluate(() => {
    const v = document.getElementById('video');
    return {
      t: v.currentTime,
      paused: v.paused,
      ended: v.ended,
      error: v.error ? String(v.error.code) : null,
      serving: state.servingEdge,
      segments: state.segments.map((s) => ({ edge: s.edge, url: s.url, at: +s.at })),
      log: Array.from(document.querySelectorAll('#log-list li')).map((li) => li.textContent),
    };
  });
}

async function waitMedia(page, pred, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let m = await media(page);
  while (!pred(m) && Date.now() < end) {
    await sleep(250);
    m = await media(page);
  }
  return m;
}

// Steering (through the page's origin, which the browser trusts) says the
// edge is `up` again: cache-control readmitted it and steered it back in.
async function edgeUpInSteering(page, id, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const state = await page.evaluate(async (edge) => {
      try {
        const list = await (await fetch('/v1/edges', { cache: 'no-store' })).json();
        const e = list.find((x) => (x.edge_id || x.id) === edge);
        return e ? e.state : null;
      } catch { return null; }
    }, id);
    if (state === 'up') return true;
    await sleep(250);
  }
  return false;
}

async function run(kind, quic) {
  const proto = quic ? 'HTTP/3' : 'HTTPS';
  const name = `${kind === 'hls' ? 'hls.js' : 'dash.js'} over ${proto}`;
  const browser = await launch(quic);
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await page.goto(`${endpoints.steering}/`, { waitUntil: 'load' });
    await page.waitForFunction(() => window.Hls && window.dashjs && typeof state === 'object' && state.cfg, null, { timeout: 15000 });
    await page.fill('#title', title);
    await page.selectOption('#format', kind);
    const before = logSizes();
    const started = Date.now();
    await page.click('#play');
    let m = await waitMedia(page, (x) => x.t >= 8 || x.error, 60000);
    check(m.t >= 8 && !m.error, `${name}: plays 8 s of ${title}`,
      `media time ${m.t.toFixed(1)} s after ${((Date.now() - started) / 1000).toFixed(1)} s, error ${m.error}; log: ${m.log.slice(0, 6).join(' | ')}`);
    // The edges' own account of it: segments of the title, over the protocol.
    const lines = endpoints.edges.flatMap((e) => accessLines(e.id, before.get(e.id)));
    const want = quic ? ['proto="h3"'] : ['proto="h2"', 'proto="h1"'];
    const over = lines.filter((l) => want.some((p) => l.includes(p)));
    const others = lines.filter((l) => !want.some((p) => l.includes(p)));
    check(over.length >= 4 && others.length === 0, `${name}: the edges logged the segments as ${want.join(' or ')}`,
      `${over.length} segment requests over ${want.join('/')}, ${others.length} over something else: ${others.slice(0, 2).join(' / ')}`);
    if (shots) await page.screenshot({ path: path.join(shots, `${kind}.png`), fullPage: true });

    // Failover: kill the edge serving now.
    const serving = m.serving || (m.segments[0] && m.segments[0].edge);
    if (!edgeById.has(serving)) {
      fail(`${name}: keeps playing when the serving edge is killed`, `no serving edge known (${serving})`);
      return;
    }
    const pid = Number(fs.readFileSync(path.join(stateDir, 'run', `${serving}.pid`), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) {
      fail(`${name}: keeps playing when the serving edge is killed`, `bad pid file for ${serving}: ${pid}`);
      return;
    }
    const t0 = m.t;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    // Watch for stalls: the video's `waiting` time after the kill.
    await page.evaluate(() => {
      const v = document.getElementById('video');
      window.__stall = { ms: 0, since: null };
      v.addEventListener('waiting', () => { window.__stall.since = performance.now(); });
      v.addEventListener('playing', () => {
        if (window.__stall.since !== null) window.__stall.ms += performance.now() - window.__stall.since;
        window.__stall.since = null;
      });
    });
    m = await waitMedia(page, (x) => x.t >= t0 + 12 || x.ended, 45000);
    const stall = await page.evaluate(() => window.__stall.ms + (window.__stall.since === null ? 0 : performance.now() - window.__stall.since));
    const after = m.segments.filter((s) => s.at >= killedAt);
    const fromOthers = after.filter((s) => s.edge && s.edge !== serving);
    const wall = (Date.now() - killedAt) / 1000;
    check(m.t >= t0 + 12 && !m.error && fromOthers.length > 0,
      `${name}: keeps playing from another edge after ${serving} is killed`,
      `media ${t0.toFixed(1)} -> ${m.t.toFixed(1)} s in ${wall.toFixed(1)} s, ${fromOthers.length} segments from other edges, error ${m.error}`);
    console.log(`# ${name}: after killing ${serving}: media +${(m.t - t0).toFixed(1)} s in ${wall.toFixed(1)} s wall, stalled ${Math.round(stall)} ms, next edge ${fromOthers[0] ? fromOthers[0].edge : '-'}`);
    if (shots) await page.screenshot({ path: path.join(shots, `${kind}-failover.png`), fullPage: true });
    check(pageErrors.length === 0, `${name}: no script errors on the page`, pageErrors.slice(0, 3).join(' | '));

    // Bring the edge back for what follows.
    const r = await fetch(`${control}/v1/edges/${serving}/start`, { method: 'POST' });
    check(r.ok && (await edgeUpInSteering(page, serving, 20000)), `${name}: ${serving} starts again and steering has it up`, `control API status ${r.status}`);
  } catch (e) {
    fail(`${name}`, e.stack || String(e));
  } finally {
    await browser.close();
  }
}

await run('hls', true);
await run('dash', false);
console.log(`# players: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
