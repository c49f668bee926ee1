// Coming back after a long absence: 1200 messages behind, more bytes than the server's
// per-socket write queue (here 64 KiB). The client pages such a gap over HTTP before it resumes
// (docs/protocol.md, "How to resume correctly", step 7); every message shows exactly once, in
// order.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from './lib.mjs';

const GAP = 1200;
const fx = L.serverAndBrowser({
  extraArgs: ['--write-queue-bytes', '65536', '--send-rate', '100000', '--send-burst', '100000'],
});

test('a gap larger than the write queue: every message once, in order', async () => {
  const { server, browser } = fx;
  const alice = await L.apiRegister(server, 'alice');
  let bob = await L.openClient(browser, server);
  await L.registerUi(bob, 'bob');
  await L.wsRequests(bob, server, alice.token, [
    { type: 'create', room: 'busy', visibility: 'public' },
    { type: 'send', room: 'busy', client_msg_id: 'a0', body: 'first' },
  ]);
  await L.joinRoomUi(bob, 'busy');
  await L.waitForBody(bob, 'first');
  // The cursor is persisted, then bob goes away.
  await bob.waitForFunction(() => {
    const user = JSON.parse(localStorage.getItem('parley.session')).user;
    return JSON.parse(localStorage.getItem(`parley.cursors.${user}`) || '{}').busy === 1;
  });
  const saved = await bob.context().storageState();
  await bob.context().close();

  const pad = 'x'.repeat(200);
  const frames = [];
  for (let i = 1; i <= GAP; i++)
    frames.push({ type: 'send', room: 'busy', client_msg_id: `a${i}`, body: `${i} ${pad}` });
  const helper = await L.openClient(browser, server);
  await L.wsRequests(helper, server, alice.token, frames);
  await helper.context().close();

  // bob comes back in a new tab: same token and cursors; the socket's closes are recorded.
  const ctx = await browser.newContext({
    storageState: saved,
    viewport: { width: 1000, height: 700 },
  });
  await ctx.addInitScript(() => {
    window.__closes = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('close', (ev) => window.__closes.push([ev.code, ev.reason]));
      }
    };
  });
  bob = await ctx.newPage();
  const pages = [];
  bob.on('request', (r) => {
    if (r.url().includes('/api/v1/rooms/busy/messages')) pages.push(new URL(r.url()).search);
  });
  bob.problems = [];
  bob.on('pageerror', (e) => bob.problems.push(e.message));
  await bob.goto(server.url + '/');
  await L.waitOnline(bob, 30000);
  await bob.waitForSelector(`[data-testid="room-item"][data-room="busy"][data-unread="${GAP}"]`);
  await bob.locator('[data-testid="room-item"][data-room="busy"]').click();
  await bob.waitForFunction(
    (n) =>
      document.querySelectorAll('[data-testid="message-list"] [data-testid="message"]').length >= n,
    GAP,
    { timeout: 20000 },
  );
  // Everything after the cursor is held; scroll to the start for the rest.
  const scroller = L.tid(bob, 'message-scroller');
  for (let i = 0; i < 20 && (await L.tid(bob, 'history-start').isHidden()); i++) {
    await scroller.evaluate((el) => {
      el.scrollTop = 0;
    });
    await L.sleep(150);
  }
  await L.tid(bob, 'history-start').waitFor({ state: 'visible' });
  const shown = await L.shownMessages(bob);
  assert.equal(shown.length, GAP + 1);
  shown.forEach((m, i) => {
    assert.equal(m.seq, i + 1);
    assert.equal(m.body, i === 0 ? 'first' : `${i} ${pad}`);
  });
  const closes = await bob.evaluate(() => window.__closes);
  console.log(`# sockets closed while resuming: ${JSON.stringify(closes)}; HTTP pages: ${pages}`);
  assert.ok(pages.length >= GAP / 200, `the gap was paged over HTTP (${pages.length} pages)`);
  assert.equal(pages[0], '?before=202&limit=200');
  assert.deepEqual(bob.problems, []);
});
