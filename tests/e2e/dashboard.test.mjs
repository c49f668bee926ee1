// The admin dashboard (/dashboard.html): an operator grants the admin flag with
// `parleyd admin grant` on the running server's store; the admin sees a card per node whose
// figures (connections, message counters and rates, send-to-ack latency, memory) move while
// traffic runs, and its charts are drawn; a non-admin is refused with an "admins only" message.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import * as L from './lib.mjs';

const run = promisify(execFile);

const fx = L.serverAndBrowser();

/** `parleyd admin grant|revoke USER` on the test server's SQLite store, while it runs. */
async function admin(action, user) {
  const store = `sqlite:${path.join(fx.server.dir, 'p.db')}`;
  const { stdout } = await run(L.PARLEYD, ['admin', action, user, '--store', store], {
    timeout: 20000,
  });
  return stdout;
}

const card = (page) => page.locator('[data-testid="node-card"]').first();
const attr = async (page, name) => Number(await card(page).getAttribute(name));

test('an admin sees the node charts move with traffic; a non-admin is refused', async () => {
  const { server, browser } = fx;
  // Both log in through the chat client, which keeps the session in localStorage.
  const boss = await L.openClient(browser, server);
  await L.registerUi(boss, 'boss');
  const pleb = await L.openClient(browser, server);
  await L.registerUi(pleb, 'pleb');
  assert.equal(await L.tid(boss, 'dashboard-link').getAttribute('href'), '/dashboard.html');

  const granted = await admin('grant', 'boss');
  assert.match(granted, /boss is now an admin/);

  // The non-admin: refused, no node shown.
  const plebDash = await pleb.context().newPage();
  plebDash.problems = [];
  plebDash.on('pageerror', (e) => plebDash.problems.push(`pageerror: ${e.message}`));
  await plebDash.goto(`${server.url}/dashboard.html`);
  const refused = L.tid(plebDash, 'dashboard-refused');
  await refused.waitFor({ state: 'visible', timeout: 10000 });
  assert.match(await refused.textContent(), /Admins only/);
  assert.equal(await plebDash.locator('[data-testid="node-card"]').count(), 0);

  // The admin: one card, this node, with its live connections (boss's and pleb's chat tabs).
  const dash = await boss.context().newPage();
  dash.problems = [];
  dash.on('pageerror', (e) => dash.problems.push(`pageerror: ${e.message}`));
  dash.on('console', (m) => {
    // Chromium logs the refused request (403) of the end of the test itself.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text()))
      dash.problems.push(`console: ${m.text()}`);
  });
  await dash.goto(`${server.url}/dashboard.html`);
  await dash.waitForFunction(
    () => Number(document.querySelector('[data-testid="node-card"]')?.dataset.samples) >= 2,
    null,
    { timeout: 10000 },
  );
  assert.equal(await L.tid(dash, 'dashboard-refused').isHidden(), true);
  assert.ok((await attr(dash, 'data-connections')) >= 2);
  assert.ok((await attr(dash, 'data-rss-mib')) > 0);
  const in0 = await attr(dash, 'data-msgs-in');
  const out0 = await attr(dash, 'data-msgs-out');
  const conns0 = await attr(dash, 'data-connections');

  // Traffic: 150 messages through the WebSocket API (from the chat tab), plus one more socket
  // held open while it runs.
  const COUNT = 150;
  const frames = [{ type: 'create', room: 'busy', visibility: 'public' }];
  for (let i = 1; i <= COUNT; i++)
    frames.push({ type: 'send', room: 'busy', client_msg_id: `d-${i}`, body: `load ${i}` });
  // The sending socket is the room's only member, and the node counts a message as delivered
  // only to the sockets in the room when it arrives: so the socket stays open until its own
  // message frame came back for every send, not only the acks, or the last deliveries could miss
  // it and the delivered counter below stay short of +COUNT.
  const loader = (await L.apiRegister(server, 'loader')).token;
  const traffic = L.wsRequests(boss, server, loader, frames, { awaitOwnMessages: true });

  // While it runs: a positive inbound rate is shown and the connection count went up.
  await dash.waitForFunction(
    (c0) => {
      const el = document.querySelector('[data-testid="node-card"]');
      return Number(el.dataset.msgsInRate) > 0 && Number(el.dataset.connections) > c0;
    },
    conns0,
    { timeout: 15000 },
  );
  const replies = await traffic;
  assert.equal(replies.filter((r) => r.type === 'ack').length, COUNT);

  // Afterwards: the counters moved by at least the messages sent (and each was delivered at least to
  // the sender), the latency chart has a value.
  await dash.waitForFunction(
    ([i0, o0, n]) => {
      const d = document.querySelector('[data-testid="node-card"]').dataset;
      return Number(d.msgsIn) >= i0 + n && Number(d.msgsOut) >= o0 + n;
    },
    [in0, out0, COUNT],
    { timeout: 10000 },
  );
  // (Sends answered rate_limited and retried count as received too: at least COUNT.)
  assert.ok((await attr(dash, 'data-msgs-in')) - in0 >= COUNT);
  assert.ok((await attr(dash, 'data-msgs-out')) - out0 >= COUNT);
  assert.ok((await attr(dash, 'data-ack-p99-ms')) > 0);
  // The charts were drawn: the messages/s canvas has painted pixels.
  const painted = await dash.evaluate(() => {
    const c = document.querySelector('[data-testid="chart-msgs"] canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(painted > 50, `only ${painted} painted pixels`);
  await dash.screenshot({ path: L.saveArtifact('dashboard.png') });

  // Revoked: the same admin is refused on the next poll.
  await admin('revoke', 'boss');
  await L.tid(dash, 'dashboard-refused').waitFor({ state: 'visible', timeout: 10000 });

  assert.deepEqual(dash.problems, []);
  assert.deepEqual(plebDash.problems, []);
  assert.deepEqual(boss.problems, []);
});
