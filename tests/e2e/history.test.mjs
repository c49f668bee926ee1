// Scrolling up loads older history until the first message: 120 messages are sent through
// the WebSocket API, then the room is opened in the browser and scrolled up with the wheel.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from './lib.mjs';

const COUNT = 120;
// The messages are prepared quickly: no send rate limit on this server.
const fx = L.serverAndBrowser({
  extraArgs: ['--send-rate', '100000', '--send-burst', '100000'],
});

test('scrolling up loads older history until the first message', async () => {
  const { server, browser } = fx;
  const carol = await L.apiRegister(server, 'carol');
  const page = await L.openClient(browser, server, { viewport: { width: 1000, height: 640 } });
  const frames = [{ type: 'create', room: 'archive', visibility: 'public' }];
  for (let i = 1; i <= COUNT; i++)
    frames.push({
      type: 'send',
      room: 'archive',
      client_msg_id: `c-${i}`,
      body: `message number ${i}`,
    });
  const replies = await L.wsRequests(page, server, carol.token, frames);
  assert.equal(replies[0].type, 'joined');
  assert.deepEqual(
    replies.slice(1).map((r) => [r.type, r.seq]),
    Array.from({ length: COUNT }, (_, i) => ['ack', i + 1]),
  );

  await L.registerUi(page, 'dave');
  await L.joinRoomUi(page, 'archive');
  const list = '[data-testid="message-list"] [data-testid="message"]';
  // The newest page first, at the bottom.
  await page.waitForFunction((sel) => document.querySelectorAll(sel).length > 0, list);
  const first = await L.shownMessages(page);
  assert.ok(
    first.length < COUNT,
    `the first screen holds a page, not everything (${first.length})`,
  );
  assert.equal(first.at(-1).seq, COUNT);
  assert.equal(await L.tid(page, 'history-start').isHidden(), true);

  // Scroll up with the mouse wheel until the start of the room shows.
  const scroller = L.tid(page, 'message-scroller');
  await scroller.hover();
  let loads = 0;
  let shownBefore = first.length;
  const atStart = async () =>
    (await L.tid(page, 'history-start').isVisible()) &&
    (await scroller.evaluate((el) => el.scrollTop)) === 0;
  for (let i = 0; i < 60 && !(await atStart()); i++) {
    await page.mouse.wheel(0, -1500);
    await L.sleep(120);
    const n = await page.locator(list).count();
    if (n > shownBefore) {
      loads++;
      // Older messages were inserted above without throwing the view to the very top.
      const top = await scroller.evaluate((el) => el.scrollTop);
      if (n < COUNT) assert.ok(top > 0, 'the view keeps its place while older messages load');
      shownBefore = n;
    }
  }
  await L.tid(page, 'history-start').waitFor({ state: 'visible' });
  assert.ok(loads >= 1, `older pages were loaded while scrolling (${loads})`);
  assert.equal(await L.tid(page, 'history-start').textContent(), 'This is the start of archive.');
  assert.equal(await L.tid(page, 'load-older').isHidden(), true);

  const all = await L.shownMessages(page);
  assert.deepEqual(
    all.map((m) => [m.seq, m.from, m.body]),
    Array.from({ length: COUNT }, (_, i) => [i + 1, 'carol', `message number ${i + 1}`]),
  );
  // The first message is on screen.
  const firstVisible = await page.evaluate(() => {
    const sc = document.querySelector('[data-testid="message-scroller"]');
    const el = document.querySelector('[data-testid="message"][data-seq="1"]');
    const a = sc.getBoundingClientRect();
    const b = el.getBoundingClientRect();
    return b.bottom > a.top && b.top < a.bottom;
  });
  assert.ok(firstVisible, 'message 1 is visible at the top');

  // A live message still lands at the end, once.
  await L.wsRequests(page, server, carol.token, [
    { type: 'send', room: 'archive', client_msg_id: 'c-live', body: 'live one' },
  ]);
  await L.waitForBody(page, 'live one');
  const final = await L.shownMessages(page);
  assert.equal(final.length, COUNT + 1);
  assert.deepEqual(final.at(-1), { seq: COUNT + 1, from: 'carol', body: 'live one' });
  assert.deepEqual(page.problems, []);
});
