// parleyd is killed (SIGKILL) and restarted on the same port and data while one user keeps
// typing and sending: every message sent before, during and after arrives exactly once, in
// order, on both sides.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from './lib.mjs';

const fx = L.serverAndBrowser();

/** Types a message key by key (so `typing` frames go out) and sends it with Enter. */
async function typeAndSend(page, text) {
  const input = L.tid(page, 'composer-input');
  await input.pressSequentially(text, { delay: 8 });
  await input.press('Enter');
}

test('kill -9 and restart while sending: each message exactly once, in order, both sides', async () => {
  const { server, browser } = fx;
  const alice = await L.openClient(browser, server);
  const bob = await L.openClient(browser, server);
  await L.registerUi(alice, 'alice');
  await L.registerUi(bob, 'bob');
  await L.createRoomUi(alice, 'ops');
  await L.joinRoomUi(bob, 'ops');

  const sent = [];
  const send = async (text) => {
    sent.push(text);
    await typeAndSend(alice, text);
  };

  // Before: live, acknowledged.
  for (let i = 1; i <= 8; i++) await send(`before ${i}`);
  await L.waitForBody(bob, 'before 8');

  // During: the server dies with messages in flight; alice keeps typing and sending.
  const sending = (async () => {
    for (let i = 1; i <= 12; i++) {
      await send(`during ${i}`);
      await L.sleep(60);
    }
  })();
  await L.sleep(150);
  await server.kill();
  await alice.waitForSelector('[data-testid="connection-state"][data-state="reconnecting"]');
  await bob.waitForSelector('[data-testid="connection-state"][data-state="reconnecting"]');
  assert.match(await L.tid(alice, 'connection-state').textContent(), /^reconnecting…/);
  await sending;
  // Sends made while offline wait in the outbox, visibly.
  const waiting = await alice.$$eval('[data-testid="pending-message"]', (els) =>
    els.map((e) => [
      e.dataset.state,
      e.querySelector('[data-testid="message-status"]').textContent,
    ]),
  );
  assert.ok(waiting.length > 0, 'messages sent while the server is down wait in the outbox');
  await alice.screenshot({ path: L.saveArtifact('restart-offline.png') });
  for (const [st, text] of waiting) {
    assert.ok(['sending', 'retrying', 'sent'].includes(st), st);
    assert.ok(['sending…', 'retrying…', 'sent'].includes(text), text);
  }
  await L.sleep(500);

  // The same port and data again.
  await server.start();
  // After: keep going while the clients reconnect and resume.
  for (let i = 1; i <= 8; i++) await send(`after ${i}`);

  await L.waitOnline(alice, 30000);
  await L.waitOnline(bob, 30000);
  const expected = sent.map((body, i) => ({ seq: i + 1, from: 'alice', body }));
  for (const page of [alice, bob]) {
    await page.waitForFunction(
      (n) =>
        document.querySelectorAll('[data-testid="message-list"] [data-testid="message"]').length >=
          n && document.querySelectorAll('[data-testid="pending-message"]').length === 0,
      expected.length,
      { timeout: 30000 },
    );
    // Give any duplicate a chance to show up before judging.
    await L.sleep(300);
    assert.deepEqual(await L.shownMessages(page), expected);
  }
  // The store agrees: exactly these messages, once each.
  const token = await bob.evaluate(() => JSON.parse(localStorage.getItem('parley.session')).token);
  const page = await L.apiGet(server, token, '/api/v1/rooms/ops/messages?limit=200');
  assert.deepEqual(
    page.messages.map((m) => [m.seq, m.body]),
    expected.map((m) => [m.seq, m.body]),
  );
  // And after a reload, bob sees the same list (from history this time).
  await bob.reload();
  await L.waitOnline(bob);
  await bob.waitForSelector('[data-testid="room-view"][data-room="ops"]');
  await L.tid(bob, 'history-start').waitFor({ state: 'visible' });
  assert.deepEqual(await L.shownMessages(bob), expected);

  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});
