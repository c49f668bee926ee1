// Produces the README's screenshot of the chat view (docs/screenshot-chat.png), plus dark and
// phone-width variants in tests/e2e/artifacts/ for review. Set PARLEY_SCREENSHOT=0 to skip
// writing into docs/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as L from './lib.mjs';

const README_SHOT = path.join(L.REPO_ROOT, 'docs', 'screenshot-chat.png');
const fx = L.serverAndBrowser();

test('screenshot of the chat view for the README', async () => {
  const { server, browser } = fx;
  const carol = await L.apiRegister(server, 'carol');
  const alice = await L.openClient(browser, server, { viewport: { width: 1200, height: 800 } });
  await L.registerUi(alice, 'alice');
  const aliceToken = await alice.evaluate(
    () => JSON.parse(localStorage.getItem('parley.session')).token,
  );
  const bob = await L.openClient(browser, server);
  await L.registerUi(bob, 'bob');
  const bobToken = await bob.evaluate(
    () => JSON.parse(localStorage.getItem('parley.session')).token,
  );

  // Rooms, made from another socket of alice's: her open tab learns them from the server.
  await L.wsRequests(alice, server, aliceToken, [
    { type: 'create', room: 'general', visibility: 'public' },
    { type: 'create', room: 'random', visibility: 'public' },
    { type: 'create', room: 'releases', visibility: 'private' },
    { type: 'invite', room: 'releases', user: 'carol' },
    { type: 'dm', user: 'carol' },
  ]);
  await L.wsRequests(alice, server, carol.token, [
    { type: 'join', room: 'general' },
    { type: 'join', room: 'random' },
    { type: 'join', room: 'releases' },
  ]);
  await L.joinRoomUi(bob, 'general');
  const say = (token, room, body, id) =>
    L.wsRequests(alice, server, token, [{ type: 'send', room, client_msg_id: id, body }]);
  await say(
    carol.token,
    'general',
    'Morning! Release notes for 0.3 are up for review: https://example.com/parley/releases/0.3',
    'c1',
  );
  await alice.waitForSelector('[data-testid="room-item"][data-room="general"][data-unread="1"]');
  await item(alice, 'general').click();
  await L.sendUi(alice, 'Thanks, reading them now.');
  await say(
    bobToken,
    'general',
    'I ran the restart test again: parleyd killed mid-send, and every message came back exactly once.',
    'b1',
  );
  await say(bobToken, 'general', 'Soak numbers are on the dashboard too.', 'b2');
  await L.sendUi(alice, 'Nice. Shall we ship the new web client with it?');
  await say(
    carol.token,
    'general',
    'Yes, once the phone layout is reviewed.\nI will check dark mode tonight.',
    'c2',
  );
  await L.sendUi(alice, "Let's do it. I'll tag the release after lunch.");
  await say(carol.token, 'random', 'Anyone up for lunch at noon?', 'c3');
  await say(carol.token, 'random', 'The place across the street has ramen today.', 'c4');
  await say(carol.token, 'random', 'I can book a table for 5.', 'c5');
  await L.wsRequests(alice, server, bobToken, [
    { type: 'dm', user: 'alice' },
    {
      type: 'send',
      room: 'dm:alice:bob',
      client_msg_id: 'b3',
      body: 'Got a minute after standup?',
    },
  ]);

  await L.waitForBody(alice, "Let's do it. I'll tag the release after lunch.");
  await alice.waitForSelector('[data-testid="room-item"][data-room="random"][data-unread="3"]');
  await alice.waitForSelector(
    '[data-testid="room-item"][data-room="dm:alice:bob"][data-unread="1"]',
  );
  await alice.waitForSelector('[data-testid="room-item"][data-room="dm:alice:carol"]');
  await alice.waitForSelector('[data-testid="room-item"][data-room="releases"]');
  await alice.waitForFunction(
    () => document.querySelectorAll('[data-testid="pending-message"]').length === 0,
  );
  // bob is online and typing.
  await L.tid(bob, 'composer-input').pressSequentially('Sounds good', { delay: 20 });
  await alice.waitForSelector('[data-testid="typing-indicator"][data-users="bob"]');
  await alice.waitForSelector('[data-testid="person"][data-user="bob"][data-status="online"]');
  await alice.waitForSelector(
    '[data-testid="presence-dot"][data-user="bob"][data-status="online"]',
  );
  await alice.mouse.move(600, 300);

  const shot = await alice.screenshot({ path: L.saveArtifact('chat-light.png') });
  assert.ok(shot.length > 10000);
  if (process.env.PARLEY_SCREENSHOT !== '0') fs.writeFileSync(README_SHOT, shot);

  // Dark theme (system setting) and phone width, for review.
  await alice.emulateMedia({ colorScheme: 'dark' });
  await L.tid(bob, 'composer-input').pressSequentially('!', { delay: 20 });
  await alice.screenshot({ path: L.saveArtifact('chat-dark.png') });
  const bg = await alice.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(bg, 'rgb(244, 245, 248)', 'dark theme applies');
  await alice.setViewportSize({ width: 390, height: 780 });
  await alice.screenshot({ path: L.saveArtifact('chat-phone-dark.png') });
  await alice.emulateMedia({ colorScheme: 'light' });
  await alice.screenshot({ path: L.saveArtifact('chat-phone-light.png') });
  await L.tid(alice, 'back-to-rooms').click();
  await L.tid(alice, 'sidebar').waitFor({ state: 'visible' });
  await alice.screenshot({ path: L.saveArtifact('rooms-phone-light.png') });
  // The theme button overrides the system setting and is remembered.
  await L.tid(alice, 'theme-toggle').click(); // auto → light
  await L.tid(alice, 'theme-toggle').click(); // light → dark
  assert.equal(await alice.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await alice.reload();
  await L.waitOnline(alice);
  assert.equal(await alice.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await alice.screenshot({ path: L.saveArtifact('rooms-phone-dark.png') });
  await L.tid(alice, 'theme-toggle').click(); // dark → auto
  assert.equal(await alice.evaluate(() => document.documentElement.dataset.theme), undefined);

  // The login screen, both themes.
  const login = await L.openClient(browser, server, { viewport: { width: 900, height: 640 } });
  await login.screenshot({ path: L.saveArtifact('login-light.png') });
  await login.emulateMedia({ colorScheme: 'dark' });
  await login.screenshot({ path: L.saveArtifact('login-dark.png') });

  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});

const item = (page, room) => page.locator(`[data-testid="room-item"][data-room="${room}"]`);
