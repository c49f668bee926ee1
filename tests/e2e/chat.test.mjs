// Two users in two browser contexts register, create a room, chat both ways, see typing and
// presence; a reload keeps the session and shows the same history.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as L from './lib.mjs';

describe('two users chatting', () => {
  const fx = L.serverAndBrowser();
  let alice;
  let bob;

  before(async () => {
    alice = await L.openClient(fx.browser, fx.server);
    bob = await L.openClient(fx.browser, fx.server);
  });

  test('register, create a room, chat both ways, typing and presence', async () => {
    await L.registerUi(alice, 'alice');
    await L.registerUi(bob, 'bob');
    assert.equal(await L.tid(alice, 'current-user').textContent(), 'alice');
    assert.equal(await L.tid(bob, 'connection-state').textContent(), 'online');

    await L.createRoomUi(alice, 'general');
    assert.equal(await L.tid(alice, 'room-kind').textContent(), 'public room');
    await L.joinRoomUi(bob, 'general');

    // alice → bob
    await L.sendUi(alice, 'hello bob');
    // "sending…" until the ack (it may be quick: accept either state, but it must be one of ours)
    await L.waitForBody(bob, 'hello bob');
    await L.waitForBody(alice, 'hello bob');
    // bob → alice, with a second line
    await L.sendUi(bob, 'hi alice\nhow are you?');
    await L.waitForBody(alice, 'hi alice\nhow are you?');
    await L.sendUi(alice, 'fine, thanks');
    await L.waitForBody(bob, 'fine, thanks');

    for (const [page, me] of [
      [alice, 'alice'],
      [bob, 'bob'],
    ]) {
      // The sender's own copy comes back as an echo, after its ack; until the page has drawn
      // it, "no pending message" alone can also mean "not drawn yet" (CI saw seq 3 missing).
      await L.waitForBody(page, 'fine, thanks');
      await page.waitForFunction(
        () => document.querySelectorAll('[data-testid="pending-message"]').length === 0,
      );
      const shown = await L.shownMessages(page);
      assert.deepEqual(
        shown.map((m) => [m.seq, m.from, m.body]),
        [
          [1, 'alice', 'hello bob'],
          [2, 'bob', 'hi alice\nhow are you?'],
          [3, 'alice', 'fine, thanks'],
        ],
      );
      // Own messages are marked as such, the others' are not.
      const own = await page.$$eval('[data-testid="message"]', (els) =>
        els.map((e) => [e.dataset.from, e.dataset.own, e.classList.contains('own')]),
      );
      for (const [from, dataOwn, cls] of own) {
        assert.equal(dataOwn, String(from === me));
        assert.equal(cls, from === me);
      }
      // A day separator heads the list.
      assert.equal(
        await page.locator('[data-testid="message-list"] > li').first().getAttribute('data-testid'),
        'day-separator',
      );
      assert.equal(await L.tid(page, 'day-separator').first().textContent(), 'Today');
    }

    // Typing: bob types without sending; alice sees it, and it goes away after the message.
    await L.tid(bob, 'composer-input').pressSequentially('typing something', { delay: 15 });
    await alice.waitForSelector('[data-testid="typing-indicator"][data-users="bob"]');
    assert.equal(await L.tid(alice, 'typing-indicator').textContent(), 'bob is typing…');
    await L.tid(bob, 'composer-input').press('Enter');
    await L.waitForBody(alice, 'typing something');
    await alice.waitForSelector('[data-testid="typing-indicator"][data-users=""]');
    // …and alice typing right after her own send is seen again at once.
    await L.sendUi(alice, 'one more');
    await L.tid(alice, 'composer-input').pressSequentially('and another', { delay: 15 });
    await bob.waitForSelector('[data-testid="typing-indicator"][data-users="alice"]');
    await L.tid(alice, 'composer-input').fill('');

    // Presence: each sees the other online in the room header.
    await alice.waitForSelector('[data-testid="person"][data-user="bob"][data-status="online"]');
    await bob.waitForSelector('[data-testid="person"][data-user="alice"][data-status="online"]');
    // A DM shows the peer's presence dot in the room list too.
    await L.tid(alice, 'dm-panel').locator('summary').click();
    await L.tid(alice, 'dm-user').fill('bob');
    await L.tid(alice, 'dm-submit').click();
    await alice.waitForSelector('[data-testid="room-view"][data-room="dm:alice:bob"]');
    await alice.waitForSelector(
      '[data-testid="room-item"][data-room="dm:alice:bob"] [data-testid="presence-dot"][data-user="bob"][data-status="online"]',
    );
    assert.equal(await L.tid(alice, 'room-title').textContent(), 'bob');
    // Go back to general for the reload test.
    await alice.locator('[data-testid="room-item"][data-room="general"]').click();
    await alice.waitForSelector('[data-testid="room-view"][data-room="general"]');

    // bob goes away (his only session closes): alice sees him offline, then online again.
    const bobContext = bob.context();
    const bobState = await bobContext.storageState();
    await bobContext.close();
    await alice.waitForSelector('[data-testid="person"][data-user="bob"][data-status="offline"]');
    await alice.waitForSelector(
      '[data-testid="presence-dot"][data-user="bob"][data-status="offline"]',
    );
    const ctx = await fx.browser.newContext({
      storageState: bobState,
      viewport: { width: 1100, height: 720 },
    });
    bob = await ctx.newPage();
    bob.problems = [];
    bob.on('pageerror', (e) => bob.problems.push(e.message));
    await bob.goto(fx.server.url + '/');
    await L.waitOnline(bob); // the stored token: no login form
    await alice.waitForSelector('[data-testid="person"][data-user="bob"][data-status="online"]');

    assert.deepEqual(alice.problems, []);
    assert.deepEqual(bob.problems, []);
  });

  test('a reload keeps the session and shows the same history', async () => {
    const before = await L.shownMessages(alice);
    assert.ok(before.length >= 5, `expected history, got ${before.length}`);
    const token = await alice.evaluate(
      () => JSON.parse(localStorage.getItem('parley.session')).token,
    );

    await alice.reload();
    await L.waitOnline(alice);
    assert.equal(
      await L.tid(alice, 'login-screen').isHidden(),
      true,
      'login screen shown after reload',
    );
    assert.equal(await L.tid(alice, 'current-user').textContent(), 'alice');
    // The tab reopens the room it had open, with the same messages.
    await alice.waitForSelector('[data-testid="room-view"][data-room="general"]');
    await alice.waitForFunction(
      (n) =>
        document.querySelectorAll('[data-testid="message-list"] [data-testid="message"]').length >=
        n,
      before.length,
    );
    await L.tid(alice, 'history-start').waitFor({ state: 'visible' });
    assert.deepEqual(await L.shownMessages(alice), before);
    assert.equal(
      await alice.evaluate(() => JSON.parse(localStorage.getItem('parley.session')).token),
      token,
      'the same token is used after the reload',
    );

    // Still live after the reload, both ways.
    await bob.locator('[data-testid="room-item"][data-room="general"]').click();
    await bob.waitForSelector('[data-testid="room-view"][data-room="general"]');
    await L.sendUi(bob, 'after reload');
    await L.waitForBody(alice, 'after reload');
    await L.sendUi(alice, 'still here');
    await L.waitForBody(bob, 'still here');
    assert.deepEqual(alice.problems, []);
  });
});
