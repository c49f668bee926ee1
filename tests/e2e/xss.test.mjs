// 50 XSS payloads sent as messages are shown as text and none executes: not for the sender
// (pending and acknowledged), not for the receiver (live), not after a reload (history).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as L from './lib.mjs';

// Each payload tries to set window.__xss (or to open a dialog) if it is ever parsed as HTML,
// evaluated as a template, or followed as a javascript: / data: link.
const PAYLOADS = [
  '<script>window.__xss=1</script>',
  '<img src=x onerror="window.__xss=2">',
  '<svg onload="window.__xss=3">',
  '"><img src=x onerror=window.__xss=4>',
  "'><script>window.__xss=5</script>",
  '<a href="javascript:window.__xss=6">click me</a>',
  'javascript:window.__xss=7',
  '<iframe src="javascript:window.__xss=8"></iframe>',
  '<body onload=window.__xss=9>',
  '<details open ontoggle=window.__xss=10>',
  '<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=11>',
  'https://example.com/"><img src=x onerror=window.__xss=12>',
  'https://example.com/?q=<script>window.__xss=13</script>',
  'http://x.example/"onmouseover="window.__xss=14',
  "{{constructor.constructor('window.__xss=15')()}}",
  '${window.__xss=16}',
  "<style>@import 'javascript:window.__xss=17';</style>",
  '<input autofocus onfocus=window.__xss=18>',
  '<video><source onerror="window.__xss=19"></video>',
  '<object data="javascript:window.__xss=20"></object>',
  '<embed src="javascript:window.__xss=21">',
  '<form><button formaction=javascript:window.__xss=22>go</button></form>',
  '<marquee onstart=window.__xss=23>m</marquee>',
  '<audio src=x onerror=window.__xss=24>',
  '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=25">',
  '<base href="javascript:window.__xss=26//">',
  '<img src="x`" onerror=window.__xss=27>',
  '&lt;img src=x onerror=window.__xss=28&gt;',
  '<scr<script>ipt>window.__xss=29</scr</script>ipt>',
  '<img src=x:alert(30) onerror=eval(src)>',
  '<svg><script>alert(31)</script></svg>',
  'data:text/html,<script>alert(32)</script>',
  '<a href="https://ok.example" onclick="window.__xss=33">ok</a>',
  'https://example.com/#<img src=x onerror=window.__xss=34>',
  'see https://example.com/(x)<svg/onload=window.__xss=35> now',
  '<template><img src=x onerror=window.__xss=36></template>',
  '<noscript><p title="</noscript><img src=x onerror=window.__xss=37>">',
  '<select><style></select><img src=x onerror=window.__xss=38></style>',
  '\u202e<img src=x onerror=window.__xss=39>',
  '<div style="background:url(javascript:window.__xss=40)">bg</div>',
  '<x contenteditable onfocus=window.__xss=41 autofocus>x</x>',
  '</textarea><img src=x onerror=window.__xss=42>',
  '<!--<img src="--><img src=x onerror=window.__xss=43//">',
  '<img srcset=",,,,,x" onerror=window.__xss=44>',
  '"; window.__xss=45; //',
  "'-alert(46)-'",
  '</li></ol><img src=x onerror=window.__xss=47>',
  '<link rel=stylesheet href="javascript:window.__xss=48">',
  '<a href="&#106;avascript:window.__xss=49">entity</a>',
  '<svg><animate onbegin=window.__xss=50 attributeName=x dur=1s>',
];

const fx = L.serverAndBrowser();

/** Asserts that the open room shows exactly the payloads, as text, and nothing ran. */
async function assertInert(page, who) {
  const shown = await L.shownMessages(page);
  assert.deepEqual(
    shown.map((m) => m.body),
    PAYLOADS,
    `${who}: every payload shown once, in order, as its literal text`,
  );
  const report = await page.evaluate(() => {
    const list = document.querySelector('[data-testid="message-list"]');
    const bodies = [...list.querySelectorAll('[data-testid="message-body"]')];
    const foreign = [];
    for (const b of bodies)
      for (const el of b.querySelectorAll('*')) if (el.tagName !== 'A') foreign.push(el.tagName);
    const links = [...list.querySelectorAll('a')].map((a) => ({
      href: a.href,
      protocol: new URL(a.href).protocol,
      attrs: a.getAttributeNames().sort(),
      rel: a.rel,
    }));
    return { xss: window.__xss, foreign, links };
  });
  assert.equal(report.xss, undefined, `${who}: a payload executed (window.__xss = ${report.xss})`);
  assert.deepEqual(report.foreign, [], `${who}: message bodies contain only text and links`);
  assert.ok(
    report.links.length >= 4,
    `${who}: http(s) URLs are clickable (${report.links.length})`,
  );
  for (const l of report.links) {
    assert.ok(['http:', 'https:'].includes(l.protocol), `${who}: link to ${l.href}`);
    assert.deepEqual(l.attrs, ['href', 'rel', 'target'], `${who}: link attributes ${l.attrs}`);
    assert.match(l.rel, /noopener/);
  }
  assert.deepEqual(page.problems, [], `${who}: no dialog, no page error`);
}

test('50 XSS payloads are shown as text and none executes', async () => {
  const { server, browser } = fx;
  assert.equal(PAYLOADS.length, 50);
  assert.equal(new Set(PAYLOADS).size, 50);
  const alice = await L.openClient(browser, server);
  const bob = await L.openClient(browser, server);
  await L.registerUi(alice, 'alice');
  await L.registerUi(bob, 'bob');
  await L.createRoomUi(alice, 'xss');
  await L.joinRoomUi(bob, 'xss');

  // Sent through the composer, as a person would, faster than the rate limit (burst 40).
  for (const p of PAYLOADS) await L.sendUi(alice, p);
  // While pending they are text too.
  assert.equal(await alice.evaluate(() => window.__xss), undefined);

  for (const page of [alice, bob]) {
    await page.waitForFunction(
      (n) =>
        document.querySelectorAll('[data-testid="message-list"] [data-testid="message"]').length >=
          n && document.querySelectorAll('[data-testid="pending-message"]').length === 0,
      PAYLOADS.length,
      { timeout: 30000 },
    );
  }
  // Hover and click around the messages, in case something waits for an event.
  for (const page of [alice, bob]) {
    const bodies = L.tid(page, 'message-body');
    for (let i = 0; i < PAYLOADS.length; i += 7) await bodies.nth(i).hover();
    await bodies.nth(5).click(); // the javascript: "link" text: not a link, nothing happens
  }
  await L.sleep(300);
  await assertInert(alice, 'sender');
  await assertInert(bob, 'receiver');

  // From history after a reload.
  await bob.reload();
  await L.waitOnline(bob);
  await bob.waitForSelector('[data-testid="room-view"][data-room="xss"]');
  await L.tid(bob, 'history-start').waitFor({ state: 'visible' });
  await L.sleep(300);
  await assertInert(bob, 'receiver after reload');
  // The page title and the room list are untouched.
  assert.equal(await bob.title(), 'Parley');
});
