// Shared helpers for the browser tests: a parleyd of our own, Debian's chromium through
// playwright-core, and small UI / API helpers. No browser is ever downloaded.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const WEB_ROOT = process.env.PARLEY_WEB_ROOT || path.join(REPO_ROOT, 'web');
export const ARTIFACTS = path.join(here, 'artifacts');
export const PARLEYD =
  process.env.PARLEYD || path.join(REPO_ROOT, 'build', 'release', 'src', 'app', 'parleyd');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PASSWORD = 'correct-horse-battery';

export { sleep };

/** A TCP port below 32768 that nothing listens on right now (random, then probed). */
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const ok = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port found');
}

// Whatever happens (a failed assertion, the run's timeout), no parleyd or data directory of
// ours outlives this process.
const servers = new Set();
process.once('exit', () => {
  for (const s of servers) {
    if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
});
for (const [sig, code] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
])
  process.once(sig, () => process.exit(code));

/**
 * One parleyd on 127.0.0.1:<port> with a SQLite file in a temporary directory. `kill()` sends
 * SIGKILL, `start()` starts it again on the same port and data.
 */
export class Server {
  constructor({ extraArgs = [] } = {}) {
    this.extraArgs = extraArgs;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-e2e-'));
    this.port = 0;
    this.proc = null;
    this.log = '';
    servers.add(this);
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts parleyd and waits until /readyz answers 200. The first start picks a free port (and
   * another one if that port was taken meanwhile); later starts reuse it.
   */
  async start() {
    if (!fs.existsSync(PARLEYD)) {
      throw new Error(`parleyd not found at ${PARLEYD} (build it, or set PARLEYD)`);
    }
    const fresh = !this.port;
    for (let attempt = 1; ; attempt++) {
      if (fresh && !this.port) this.port = await freePort();
      try {
        return await this.startOnce();
      } catch (err) {
        if (!fresh || attempt >= 3 || !/Address already in use/.test(this.log)) throw err;
        this.port = 0;
      }
    }
  }

  async startOnce() {
    this.log = '';
    const args = [
      '--listen',
      `127.0.0.1:${this.port}`,
      '--store',
      `sqlite:${path.join(this.dir, 'p.db')}`,
      '--web-root',
      WEB_ROOT,
      '--threads',
      '2',
      '--log-level',
      'warn',
      // Cheaper password hashing: the tests register a handful of users, not thousands.
      '--hash-threads',
      '1',
      // A quick SIGTERM at the end of a test file.
      '--drain-window-ms',
      '100',
      ...this.extraArgs,
    ];
    const proc = spawn(PARLEYD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const keep = (b) => {
      this.log = (this.log + b.toString()).slice(-20000);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    proc.exited = new Promise((resolve) =>
      proc.once('exit', (code, sig) => resolve({ code, sig })),
    );
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`parleyd exited at start-up: ${this.log}`);
      }
      try {
        const res = await fetch(`${this.url}/readyz`);
        if (res.ok) return this;
      } catch {
        /* not listening yet */
      }
      await sleep(50);
    }
    throw new Error(`parleyd did not become ready: ${this.log}`);
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill() {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await p.exited;
  }

  /** SIGTERM (drain), SIGKILL after 5 s; removes the data directory. */
  async stop() {
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await p.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    servers.delete(this);
  }
}

/** Debian's chromium, headless. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
  });
}

/**
 * The fixture every test file shares: registers a `before` hook that starts a Server (built
 * with `options`, e.g. `{ extraArgs }`) and launches the browser, and an `after` hook that
 * closes both. Call it at the top level of a test file or inside `describe()`; the hooks belong
 * to that suite, so a file's own `before` hooks registered after it see both running. Returns
 * the object whose `server` and `browser` the `before` hook fills in.
 */
export function serverAndBrowser(options = {}) {
  const fixture = { server: null, browser: null };
  before(async () => {
    fixture.server = await new Server(options).start();
    fixture.browser = await launchBrowser();
  });
  after(async () => {
    await fixture.browser?.close();
    await fixture.server?.stop();
  });
  return fixture;
}

/**
 * A browser context + page on the server's web client. Any uncaught page error, dialog or
 * console error is recorded in `page.problems` so tests can assert there were none.
 */
export async function openClient(browser, server, opts = {}) {
  const context = await browser.newContext({
    viewport: { width: 1100, height: 720 },
    locale: 'en-GB',
    timezoneId: 'UTC',
    ...opts,
  });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    page.problems.push(`dialog: ${d.type()} ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    // Chromium logs failed connections itself (expected while parleyd is down).
    const network = /WebSocket connection to|Failed to load resource|net::ERR_/.test(m.text());
    if (m.type() === 'error' && !network) page.problems.push(`console: ${m.text()}`);
  });
  await page.goto(server.url + '/');
  return page;
}

export const tid = (page, id) => page.locator(`[data-testid="${id}"]`);

/** Registers through the login form and waits until the socket is online. */
export async function registerUi(page, user, password = PASSWORD) {
  await tid(page, 'login-username').fill(user);
  await tid(page, 'login-password').fill(password);
  await tid(page, 'register-submit').click();
  await waitOnline(page);
}

export async function loginUi(page, user, password = PASSWORD) {
  await tid(page, 'login-username').fill(user);
  await tid(page, 'login-password').fill(password);
  await tid(page, 'login-submit').click();
  await waitOnline(page);
}

export async function waitOnline(page, timeout = 15000) {
  await page.waitForSelector('[data-testid="connection-state"][data-state="online"]', {
    timeout,
  });
}

export async function createRoomUi(page, name, visibility = 'public') {
  await tid(page, 'create-room-panel').locator('summary').click();
  await tid(page, 'create-room-name').fill(name);
  await tid(page, 'create-room-visibility').selectOption(visibility);
  await tid(page, 'create-room-submit').click();
  await page.waitForSelector(`[data-testid="room-view"][data-room="${name}"]`);
}

export async function joinRoomUi(page, name) {
  await tid(page, 'join-room-panel').locator('summary').click();
  await tid(page, 'join-room-name').fill(name);
  await tid(page, 'join-room-submit').click();
  await page.waitForSelector(`[data-testid="room-view"][data-room="${name}"]`);
}

/** Types a message in the composer and presses Enter. */
export async function sendUi(page, text) {
  const input = tid(page, 'composer-input');
  await input.fill(text);
  await input.press('Enter');
}

/** [{seq, from, body}] of the messages shown in the open room, in DOM order. */
export function shownMessages(page) {
  return page.$$eval('[data-testid="message-list"] [data-testid="message"]', (els) =>
    els.map((el) => ({
      seq: Number(el.dataset.seq),
      from: el.dataset.from,
      body: el.querySelector('[data-testid="message-body"]').textContent,
    })),
  );
}

/** Waits until the open room shows a message with this exact body (as text). */
export async function waitForBody(page, body, timeout = 15000) {
  await page.waitForFunction(
    (b) =>
      [...document.querySelectorAll('[data-testid="message-body"]')].some(
        (el) => el.textContent === b,
      ),
    body,
    { timeout },
  );
}

// ---- HTTP / WebSocket API, used to prepare data quickly -------------------------------------

export async function apiRegister(server, user, password = PASSWORD) {
  const res = await fetch(`${server.url}/api/v1/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: user, password }),
  });
  if (res.status !== 201) throw new Error(`register ${user}: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function apiGet(server, token, p) {
  const res = await fetch(`${server.url}${p}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * Runs a WebSocket script inside a page (Node 20 has no WebSocket client): authenticates with
 * `token`, then sends each frame of `frames` in order and waits for its reply, retrying sends
 * answered `rate_limited` after `retry_after_ms` with the same client_msg_id. Resolves with the
 * replies.
 *
 * With `{ awaitOwnMessages: true }` the socket also stays open, after the last reply, until it
 * has received its own `message` frame for every send that was acknowledged (up to
 * `ownMessagesTimeoutMs`), so that a test counting deliveries does not race the close: an ack only
 * says the message is stored, and its delivery to the sockets in the room may still be on its way.
 * Only for sends that create a message: a repeated client_msg_id gets an ack but no frame.
 */
export async function wsRequests(page, server, token, frames, options = {}) {
  const { awaitOwnMessages = false, ownMessagesTimeoutMs = 15000 } = options;
  return page.evaluate(
    async ({ url, token, frames, awaitOwnMessages, ownMessagesTimeoutMs }) => {
      const ws = new WebSocket(url);
      const waiters = new Map();
      const key = (room, id) => `${room}\n${id}`;
      // (room, client_msg_id) of the message frames of this socket's own user.
      const delivered = new Set();
      let me;
      let onDelivered = () => {};
      let onClosed = () => {};
      let welcome;
      const welcomed = new Promise((resolve, reject) => {
        welcome = resolve;
        ws.onclose = (ev) => {
          const err = new Error(`closed ${ev.code} ${ev.reason}`);
          reject(err);
          onClosed(err);
        };
      });
      ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token }));
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        if (f.type === 'welcome') {
          me = f.user;
          welcome(f);
        }
        if (f.type === 'message' && f.from === me) {
          delivered.add(key(f.room, f.client_msg_id));
          onDelivered();
        }
        if (f.ref && waiters.has(f.ref)) {
          waiters.get(f.ref)(f);
          waiters.delete(f.ref);
        }
      };
      await welcomed;
      const replies = [];
      let n = 0;
      for (const frame of frames) {
        for (;;) {
          const ref = `t${++n}`;
          const reply = await new Promise((resolve) => {
            waiters.set(ref, resolve);
            ws.send(JSON.stringify({ ...frame, ref }));
          });
          if (reply.type === 'error' && reply.code === 'rate_limited') {
            await new Promise((r) => setTimeout(r, reply.retry_after_ms || 100));
            continue;
          }
          replies.push(reply);
          break;
        }
      }
      if (awaitOwnMessages) {
        const expected = replies
          .filter((r) => r.type === 'ack')
          .map((r) => key(r.room, r.client_msg_id));
        const missing = () => expected.filter((k) => !delivered.has(k));
        await new Promise((resolve, reject) => {
          const timer = setTimeout(
            () =>
              reject(
                new Error(
                  `${missing().length} of ${expected.length} acknowledged sends were not ` +
                    `delivered back to the sender within ${ownMessagesTimeoutMs} ms`,
                ),
              ),
            ownMessagesTimeoutMs,
          );
          onDelivered = () => {
            if (missing().length === 0) {
              clearTimeout(timer);
              resolve();
            }
          };
          onClosed = (err) => {
            clearTimeout(timer);
            reject(err);
          };
          onDelivered();
        });
      }
      ws.close(1000);
      return replies;
    },
    {
      url: server.url.replace(/^http/, 'ws') + '/ws',
      token,
      frames,
      awaitOwnMessages,
      ownMessagesTimeoutMs,
    },
  );
}

export function saveArtifact(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
