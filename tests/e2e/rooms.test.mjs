// Rooms and the session around them: a private room with an invitation, unread counts and the
// "new messages" line, a DM started from the sidebar, leaving, keyboard room switching, phone
// width, and logging out.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from './lib.mjs';

const fx = L.serverAndBrowser();

const item = (page, room) => page.locator(`[data-testid="room-item"][data-room="${room}"]`);

test('private room, invitation, unread counts, DM, leave, keyboard, logout', async () => {
  const { server, browser } = fx;
  const erin = await L.openClient(browser, server);
  const frank = await L.openClient(browser, server);
  await L.registerUi(erin, 'erin');
  await L.registerUi(frank, 'frank');

  // A public room both are in, and a private one only erin is in.
  await L.createRoomUi(erin, 'lobby');
  await L.joinRoomUi(frank, 'lobby');
  await L.createRoomUi(erin, 'secret', 'private');
  assert.equal(await L.tid(erin, 'room-kind').textContent(), 'private room');
  assert.equal(await item(erin, 'secret').getAttribute('data-kind'), 'private');

  // frank cannot join it uninvited.
  await L.tid(frank, 'join-room-panel').locator('summary').click();
  await L.tid(frank, 'join-room-name').fill('secret');
  await L.tid(frank, 'join-room-submit').click();
  await frank.waitForSelector('[data-testid="notice"][data-kind="error"]');
  assert.equal(await item(frank, 'secret').count(), 0);
  await L.tid(frank, 'notice-close').click();
  await frank.keyboard.press('Escape'); // closes the open sidebar panel

  // erin invites frank; frank's client offers to join.
  await L.tid(erin, 'invite-panel').locator('summary').click();
  await L.tid(erin, 'invite-user').fill('frank');
  await L.tid(erin, 'invite-submit').click();
  await frank.waitForSelector('[data-testid="notice"]:not([hidden])');
  assert.equal(await L.tid(frank, 'notice-text').textContent(), 'erin invited you to secret.');
  // Meanwhile erin posts three messages in secret, frank sits in lobby.
  await item(frank, 'lobby').click();
  for (const t of ['one', 'two', 'three']) await L.sendUi(erin, t);
  await L.waitForBody(erin, 'three');
  await L.tid(frank, 'notice-action').click(); // "Join"
  await frank.waitForSelector('[data-testid="room-view"][data-room="secret"]');
  // Joining starts at the room's end; the earlier messages come from history.
  await L.waitForBody(frank, 'three');

  // Unread counts: erin writes in lobby while frank reads secret.
  await item(erin, 'lobby').click();
  for (const t of ['l1', 'l2']) await L.sendUi(erin, t);
  await frank.waitForSelector('[data-testid="room-item"][data-room="lobby"][data-unread="2"]');
  assert.equal(
    await item(frank, 'lobby').locator('[data-testid="room-unread"]').textContent(),
    '2',
  );
  assert.equal(await frank.title(), '(2) Parley');
  // Opening the room shows a "new messages" line and clears the count (a read marker).
  await item(frank, 'lobby').click();
  await L.waitForBody(frank, 'l2');
  await frank.waitForSelector('[data-testid="new-divider"]');
  await frank.waitForSelector('[data-testid="room-item"][data-room="lobby"][data-unread="0"]');
  // The read marker reached the server.
  const token = await frank.evaluate(
    () => JSON.parse(localStorage.getItem('parley.session')).token,
  );
  await waitFor(async () => {
    const rooms = (await L.apiGet(server, token, '/api/v1/rooms')).rooms;
    return rooms.find((r) => r.room === 'lobby').unread === 0;
  }, 'lobby read on the server');

  // Keyboard: Alt+↓ / Alt+↑ move between rooms; Enter in the composer sends.
  await L.tid(frank, 'composer-input').focus();
  await frank.keyboard.press('Alt+ArrowDown');
  await frank.waitForSelector('[data-testid="room-view"][data-room="secret"]');
  await frank.keyboard.press('Alt+ArrowUp');
  await frank.waitForSelector('[data-testid="room-view"][data-room="lobby"]');
  await frank.keyboard.type('sent with the keyboard');
  await frank.keyboard.press('Enter');
  await L.waitForBody(erin, 'sent with the keyboard');

  // A DM started by frank; erin's client picks it up with its first message.
  await L.tid(frank, 'dm-panel').locator('summary').click();
  await L.tid(frank, 'dm-user').fill('erin');
  await frank.keyboard.press('Enter');
  await frank.waitForSelector('[data-testid="room-view"][data-room="dm:erin:frank"]');
  assert.equal(await L.tid(frank, 'room-title').textContent(), 'erin');
  await frank.waitForSelector(
    '[data-testid="room-presence-dot"][data-user="erin"][data-status="online"]',
  );
  await L.sendUi(frank, 'psst');
  await erin.waitForSelector(
    '[data-testid="room-item"][data-room="dm:erin:frank"][data-unread="1"]',
  );
  await erin.waitForSelector(
    '[data-testid="room-item"][data-room="dm:erin:frank"] [data-testid="presence-dot"][data-status="online"]',
  );

  // frank leaves secret.
  await item(frank, 'secret').click();
  await L.tid(frank, 'leave-room').click();
  await frank.waitForFunction(
    () => !document.querySelector('[data-testid="room-item"][data-room="secret"]'),
  );
  assert.equal(await L.tid(frank, 'room-view').isHidden(), true);

  // Phone width: one pane at a time, with a way back.
  await frank.setViewportSize({ width: 375, height: 720 });
  assert.equal(await L.tid(frank, 'sidebar').isVisible(), true);
  await item(frank, 'lobby').click();
  await L.waitForBody(frank, 'l2');
  await L.tid(frank, 'sidebar').waitFor({ state: 'hidden' });
  assert.equal(await L.tid(frank, 'composer-input').isVisible(), true);
  const overflow = await frank.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth,
  );
  assert.equal(overflow, false, 'nothing wider than the phone screen');
  // The top bar still shows the whole name and connection state, and log-out (as an icon).
  for (const id of ['current-user', 'connection-state']) {
    const cut = await L.tid(frank, id).evaluate((el) => el.scrollWidth > el.clientWidth);
    assert.equal(cut, false, `${id} is cut at 375 px`);
  }
  assert.equal(await L.tid(frank, 'logout-button').isVisible(), true);
  await L.tid(frank, 'back-to-rooms').click();
  await L.tid(frank, 'sidebar').waitFor({ state: 'visible' });
  assert.equal(await L.tid(frank, 'room-view').isVisible(), false);
  await frank.setViewportSize({ width: 1100, height: 720 });

  // Logout: the login form, the token is dead, and a reload does not bring the session back.
  await L.tid(frank, 'logout-button').click();
  await L.tid(frank, 'login-screen').waitFor({ state: 'visible' });
  assert.equal(await frank.evaluate(() => localStorage.getItem('parley.session')), null);
  const res = await fetch(`${server.url}/api/v1/rooms`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 401);
  await frank.reload();
  await L.tid(frank, 'login-screen').waitFor({ state: 'visible' });
  // The server's reasons are shown on the login form.
  await L.tid(frank, 'login-username').fill('frank');
  await L.tid(frank, 'login-password').fill('wrong-password');
  await L.tid(frank, 'login-submit').click();
  await L.tid(frank, 'login-error').waitFor({ state: 'visible' });
  await L.tid(frank, 'register-submit').click(); // a taken name
  await frank.waitForFunction(
    (before) => document.querySelector('[data-testid="login-error"]').textContent !== before,
    await L.tid(frank, 'login-error').textContent(),
  );
  assert.match(await L.tid(frank, 'login-error').textContent(), /taken|exists/i);
  // Logging in again brings the rooms back.
  await L.loginUi(frank, 'frank');
  await item(frank, 'lobby').waitFor();
  await item(frank, 'dm:erin:frank').waitFor();
  assert.equal(await item(frank, 'secret').count(), 0);

  assert.deepEqual(erin.problems, []);
  assert.deepEqual(frank.problems, []);
});

async function waitFor(check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await L.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
