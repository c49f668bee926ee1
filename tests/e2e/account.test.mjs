// Account deletion from the web client: the Account panel in the top bar, a wrong password
// shown inline (the session stays), then the right one ends the session with "Your account was
// deleted." — in this tab, in a second tab of the same browser and on a second device (the
// server closes its socket 1008 "account deleted"); the name can neither log in nor register
// again, and the old token is dead.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as L from './lib.mjs';

const DELETED = 'Your account was deleted.';

describe('account deletion', () => {
  const fx = L.serverAndBrowser();
  let alice; // the tab that deletes
  let aliceTab2; // a second tab of the same browser (shares localStorage)
  let aliceDevice2; // another browser context: another device
  let token;

  /** A page error, dialog or console error in any of alice's pages fails the test. */
  const noProblems = () => {
    for (const p of [alice, aliceTab2, aliceDevice2]) if (p) assert.deepEqual(p.problems, []);
  };

  before(async () => {
    alice = await L.openClient(fx.browser, fx.server);
    aliceDevice2 = await L.openClient(fx.browser, fx.server);
  });

  test('the Account panel: warning, password field, fits a phone screen', async () => {
    await L.registerUi(alice, 'alice');
    await L.loginUi(aliceDevice2, 'alice');
    token = await alice.evaluate(() => JSON.parse(localStorage.getItem('parley.session')).token);

    // A second tab of the same browser picks up the stored session.
    aliceTab2 = await alice.context().newPage();
    aliceTab2.problems = [];
    aliceTab2.on('pageerror', (e) => aliceTab2.problems.push(`pageerror: ${e.message}`));
    aliceTab2.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text()))
        aliceTab2.problems.push(`console: ${m.text()}`);
    });
    await aliceTab2.goto(fx.server.url + '/');
    await L.waitOnline(aliceTab2);
    await alice.bringToFront(); // a background tab's animation frames are throttled

    assert.equal(await L.tid(alice, 'delete-account-form').isVisible(), false);
    await L.tid(alice, 'account-toggle').click();
    await L.tid(alice, 'delete-account-form').waitFor({ state: 'visible' });
    const text = async (id) => (await L.tid(alice, id).textContent()).replace(/\s+/g, ' ').trim();
    assert.equal(
      await text('delete-account-warning'),
      'This deletes your account on this server. Your messages stay in their rooms. ' +
        'This cannot be undone.',
    );
    assert.equal(await text('delete-account-submit'), 'Delete my account');
    assert.equal(await L.tid(alice, 'delete-account-error').isHidden(), true);
    // Opening the panel focuses the password field.
    assert.equal(
      await alice.evaluate(() => document.activeElement?.dataset.testid),
      'delete-account-password',
    );
    // Escape closes it.
    await alice.keyboard.press('Escape');
    await L.tid(alice, 'delete-account-form').waitFor({ state: 'hidden' });

    // Phone width: the panel is on screen and nothing is wider than the screen.
    await alice.setViewportSize({ width: 375, height: 720 });
    await L.tid(alice, 'account-toggle').click();
    await L.tid(alice, 'delete-account-submit').waitFor({ state: 'visible' });
    const box = await L.tid(alice, 'delete-account-form').boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 375, `panel off screen: ${JSON.stringify(box)}`);
    assert.equal(
      await alice.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
      false,
      'nothing wider than the phone screen',
    );
    await alice.keyboard.press('Escape');
    await alice.setViewportSize({ width: 1100, height: 720 });
    noProblems();
  });

  test('a wrong password is shown in the panel and the session stays', async () => {
    // Slow the request down a little to see the button disabled while it is in flight.
    let requests = 0;
    await alice.route('**/api/v1/users/me', async (route) => {
      requests++;
      await L.sleep(400);
      await route.continue();
    });
    await L.tid(alice, 'account-toggle').click();
    await L.tid(alice, 'delete-account-password').fill('not-my-password');
    await L.tid(alice, 'delete-account-submit').click();
    await alice.waitForSelector('[data-testid="delete-account-submit"]:disabled');
    await L.tid(alice, 'delete-account-password').press('Enter'); // no second request
    await L.tid(alice, 'delete-account-error').waitFor({ state: 'visible' });
    assert.equal(await L.tid(alice, 'delete-account-error').textContent(), 'wrong password');
    await alice.waitForSelector('[data-testid="delete-account-submit"]:enabled');
    assert.equal(requests, 1);
    await alice.unroute('**/api/v1/users/me');

    // Still logged in, still online, the panel still open; the other sessions too.
    assert.equal(await L.tid(alice, 'login-screen').isHidden(), true);
    assert.equal(await L.tid(alice, 'current-user').textContent(), 'alice');
    assert.equal(await L.tid(alice, 'delete-account-form').isVisible(), true);
    await L.waitOnline(alice);
    await L.waitOnline(aliceTab2);
    await L.waitOnline(aliceDevice2);
    // The account still works.
    await L.createRoomUi(alice, 'farewell');
    await L.sendUi(alice, 'bye all');
    await L.waitForBody(alice, 'bye all');
    noProblems();
  });

  test('the right password deletes the account everywhere', async () => {
    await L.tid(alice, 'account-toggle').click();
    await L.tid(alice, 'delete-account-form').waitFor({ state: 'visible' });
    await L.tid(alice, 'delete-account-password').fill(L.PASSWORD);
    await L.tid(alice, 'delete-account-submit').click();

    // This tab: the login screen with the message, no session left in storage.
    await L.tid(alice, 'login-screen').waitFor({ state: 'visible' });
    assert.equal(await L.tid(alice, 'app-screen').isHidden(), true);
    assert.equal(await L.tid(alice, 'login-error').textContent(), DELETED);
    // The other tabs of this browser end their sessions too, and each briefly writes the
    // {user, ended} marker before removing it; localStorage reaches this tab asynchronously,
    // so wait until the key is gone instead of reading it once.
    await alice.waitForFunction(() => localStorage.getItem('parley.session') === null, null, {
      timeout: 10000,
    });
    // Nothing kept for a deleted user (the other tabs' ends reach this tab the same way).
    await alice.waitForFunction(() => localStorage.getItem('parley.cursors.alice') === null, null, {
      timeout: 10000,
    });
    // No password left in the page.
    assert.equal(await L.tid(alice, 'delete-account-password').inputValue(), '');

    // The other tab and the other device: sent back to the login screen with the same message.
    for (const page of [aliceTab2, aliceDevice2]) {
      await L.tid(page, 'login-screen').waitFor({ state: 'visible', timeout: 10000 });
      assert.equal(await L.tid(page, 'app-screen').isHidden(), true);
      assert.equal(await L.tid(page, 'login-error').textContent(), DELETED);
    }
    // …and it stays there (no reconnect that would report something else).
    await L.sleep(1500);
    for (const page of [alice, aliceTab2, aliceDevice2]) {
      assert.equal(await L.tid(page, 'login-error').textContent(), DELETED);
      assert.equal(await L.tid(page, 'login-screen').isVisible(), true);
    }

    // The old token is dead.
    const res = await fetch(`${fx.server.url}/api/v1/rooms`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 401);
    noProblems();
  });

  test('the same credentials no longer log in, and the name stays taken', async () => {
    await L.tid(alice, 'login-username').fill('alice');
    await L.tid(alice, 'login-password').fill(L.PASSWORD);
    await L.tid(alice, 'login-submit').click();
    await alice.waitForFunction(
      (t) => {
        const el = document.querySelector('[data-testid="login-error"]');
        return !el.hidden && el.textContent !== '' && el.textContent !== t;
      },
      DELETED,
    );
    assert.equal(await L.tid(alice, 'app-screen').isHidden(), true);
    assert.equal(await L.tid(alice, 'login-screen').isVisible(), true);

    await L.tid(alice, 'login-password').fill(L.PASSWORD);
    const before = await L.tid(alice, 'login-error').textContent();
    await L.tid(alice, 'register-submit').click();
    await alice.waitForFunction(
      (t) => {
        const el = document.querySelector('[data-testid="login-error"]');
        return !el.hidden && el.textContent !== '' && el.textContent !== t;
      },
      before,
    );
    assert.equal(await L.tid(alice, 'app-screen').isHidden(), true);
    assert.equal(await alice.evaluate(() => localStorage.getItem('parley.session')), null);
    noProblems();
  });
});
