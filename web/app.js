// app.js — the Parley web client: state, delivery rules and rendering.
//
// Layout of this file:
//   1. constants and small helpers (DOM, storage, formatting)
//   2. application state and persistence (session, per-room cursors, outbox)
//   3. session lifecycle (login, register, logout, connection events)
//   4. rooms: list refresh, join/create/dm/invite/leave, presence
//   5. messages: ingestion with cursor rules, gap repair, history paging
//   6. sending: the outbox and its retry rules, typing, read markers
//   7. rendering (batched) and DOM event wiring
//
// Delivery rules (docs/protocol.md): every room has a cursor, the highest contiguous seq this
// browser has seen. It is persisted per user and sent in `auth`, so after any disconnect the
// server replays exactly what came after it. A streamed message with seq <= cursor is a
// duplicate and is dropped; one with seq > cursor + 1 is kept but triggers a history request
// for the hole. Sends wait in a persisted outbox until their ack (or their own echo) arrives
// and are re-sent with the same client_msg_id after every `synced`, which the server
// de-duplicates.
//
// User data is only ever put into the page with textContent / Text nodes, never innerHTML.

import { api, ConnState, ParleyClient } from './protocol.js';

// ---------------------------------------------------------------------------------------------
// 1. Constants and helpers
// ---------------------------------------------------------------------------------------------

const HISTORY_PAGE = 50; // messages per "load older" page
const GAP_FILL_MAX = 200; // the protocol's maximum history limit
const CATCH_UP_GAP = 1000; // a room this far behind is paged over HTTP before the resume
const TYPING_SEND_EVERY_MS = 3000; // send `typing` at most this often
const TYPING_SHOW_MS = 4000; // show "x is typing" this long after the last `typing`
const MAX_BODY_CODE_POINTS = 4000;
const READ_DEBOUNCE_MS = 250;
const NEAR_TOP_PX = 80; // scrolled this close to the top: load older messages
const NEAR_BOTTOM_PX = 60; // this close to the bottom: follow new messages
const NOTICE_MS = 6000;
const ROOM_NAME_RE = /^[a-z0-9_-]{1,64}$/;
const USER_NAME_RE = /^[a-z0-9_.-]{1,32}$/;
const ACCOUNT_DELETED_TEXT = 'Your account was deleted.';
const ACCOUNT_DELETED_REASON = 'account deleted'; // the server's close reason (1008)

const CONN_TEXT = {
  [ConnState.IDLE]: 'offline',
  [ConnState.CONNECTING]: 'connecting…',
  [ConnState.RECONNECTING]: 'reconnecting…',
  [ConnState.SYNCING]: 'syncing…',
  [ConnState.ONLINE]: 'online',
  [ConnState.STOPPED]: 'offline',
};

/** The element with the given data-testid (every element the code touches has one). */
const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

/**
 * Creates an element. `props.text` becomes textContent, `props.class` the class name, every
 * other key an attribute. Children are nodes or strings (strings become Text nodes).
 */
function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** localStorage with JSON values; never throws (private mode, quota, disabled storage). */
const storage = {
  get(key) {
    try {
      const v = localStorage.getItem(key);
      return v === null ? null : JSON.parse(v);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      console.warn('parley: cannot write to localStorage', err);
    }
  },
  remove(key) {
    try {
      localStorage.removeItem(key);
    } catch {
      /* ignore */
    }
  },
  keys(prefix) {
    const out = [];
    try {
      for (let i = 0; i < localStorage.length; i++) {
        const k = localStorage.key(i);
        if (k && k.startsWith(prefix)) out.push(k);
      }
    } catch {
      /* ignore */
    }
    return out;
  },
};

const SESSION_KEY = 'parley.session';
const cursorsKey = (user) => `parley.cursors.${user}`;
// One key per outbox entry, so that two tabs of the same user never overwrite each other's.
const outboxKey = (user, id) => `parley.outbox.${user}.${id}`;
const activeRoomKey = (user) => `parley.active.${user}`; // sessionStorage: per tab

const isSeq = (v) => Number.isSafeInteger(v) && v >= 0;
const codePoints = (s) => [...s].length;

/** A client_msg_id: 128 random bits in hex (crypto.randomUUID needs a secure context). */
function newClientMsgId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

/** Time of day (the day is shown by the separators), full date and ISO form of a unix-ms ts. */
function formatTs(ts) {
  if (!Number.isFinite(ts)) return { time: '', full: '', iso: undefined };
  const d = new Date(ts);
  return { time: timeFmt.format(d), full: fullFmt.format(d), iso: d.toISOString() };
}

/** Path segment for a room name; ':' (DM rooms) is a legal path character and stays as is. */
const roomPath = (name) => encodeURIComponent(name).replace(/%3A/gi, ':');

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

// ---------------------------------------------------------------------------------------------
// 2. State and persistence
// ---------------------------------------------------------------------------------------------

/**
 * Room state.
 *   cursor    highest contiguous seq seen (undefined until we know where the room starts for us)
 *   lastSeq   highest seq known to exist (room list, `joined`, messages)
 *   readSeq   read marker (ours or another session's)
 *   messages  seq -> message, everything held for display
 */
function makeRoom(name, kind) {
  const saved = state.savedCursors[name];
  return {
    name,
    kind: kind || (name.startsWith('dm:') ? 'dm' : null),
    cursor: isSeq(saved) ? saved : undefined,
    lastSeq: isSeq(saved) ? saved : 0,
    readSeq: 0,
    server: null, // {last_seq, read_seq, unread} from the last GET /api/v1/rooms
    messages: new Map(),
    minHeld: Infinity,
    maxHeld: 0,
    hasOlder: true,
    loadingOlder: false,
    gapFilling: false,
    typers: new Map(), // user -> time (ms) until which they count as typing
    people: new Set(), // other users seen in this room (authors, typists): shown with presence
    newAfter: null, // while open: the read marker when it was opened ("new messages" line)
    addedAt: performance.now(),
  };
}

const state = {
  session: null, // {user, token, expires_at}
  client: null, // ParleyClient
  rooms: new Map(), // name -> room
  savedCursors: {}, // cursors as last persisted (includes rooms not loaded yet)
  active: null, // name of the open room
  presence: new Map(), // user -> 'online' | 'offline'
  watched: new Set(), // users named in a `watch` on the current socket
  synced: false, // has the current socket sent `synced`?
  catchUp: false, // page gaps over HTTP before the next auth (after a "slow consumer" close)
  outbox: new Map(), // client_msg_id -> entry, in send order
  outboxOrder: 0,
  sendPausedUntil: 0, // set by rate_limited
  roomsListOk: false, // did the last GET /api/v1/rooms succeed?
  lastTypingSentAt: 0,
  deletingAccount: false, // a DELETE /api/v1/users/me is in flight
  timers: {}, // named timeouts, cleared on logout
};

function setTimer(name, fn, ms) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(() => {
    delete state.timers[name];
    fn();
  }, ms);
}
function clearTimers() {
  for (const t of Object.values(state.timers)) clearTimeout(t);
  state.timers = {};
}

const me = () => (state.session ? state.session.user : null);
const activeRoom = () => (state.active ? state.rooms.get(state.active) || null : null);

/** The other user of a DM room `dm:<a>:<b>`. */
function dmPeer(name) {
  const parts = name.split(':');
  if (parts.length !== 3 || parts[0] !== 'dm') return null;
  return parts[1] === me() ? parts[2] : parts[1];
}
const roomLabel = (room) => (room.kind === 'dm' ? dmPeer(room.name) || room.name : room.name);

/** Cursors to persist and to send in `auth`: live rooms plus saved ones not loaded yet. */
function currentCursors() {
  const c = {};
  for (const [name, v] of Object.entries(state.savedCursors)) if (isSeq(v)) c[name] = v;
  for (const [name, room] of state.rooms) if (isSeq(room.cursor)) c[name] = room.cursor;
  return c;
}

function saveCursorsNow() {
  if (!state.session) return;
  state.savedCursors = currentCursors();
  storage.set(cursorsKey(state.session.user), state.savedCursors);
}
const saveCursorsSoon = () => setTimer('cursors', saveCursorsNow, 300);

function loadSavedCursors(user) {
  const raw = storage.get(cursorsKey(user));
  const out = {};
  if (raw && typeof raw === 'object') {
    for (const [k, v] of Object.entries(raw)) if (isSeq(v)) out[k] = v;
  }
  return out;
}

/** Loads the persisted outbox of a user, oldest first. */
function loadOutbox(user) {
  const entries = [];
  for (const key of storage.keys(`parley.outbox.${user}.`)) {
    const e = storage.get(key);
    if (
      e &&
      typeof e.room === 'string' &&
      typeof e.client_msg_id === 'string' &&
      typeof e.body === 'string'
    ) {
      entries.push(e);
    } else {
      storage.remove(key);
    }
  }
  entries.sort((a, b) => (a.order || 0) - (b.order || 0));
  const map = new Map();
  for (const e of entries) {
    map.set(e.client_msg_id, newOutboxEntry(e.room, e.body, e.client_msg_id, e.order, e.created));
    state.outboxOrder = Math.max(state.outboxOrder, e.order || 0);
  }
  return map;
}

function newOutboxEntry(room, body, id, order, created) {
  return {
    room,
    body,
    client_msg_id: id,
    order, // sort key: creation time in µs plus a counter
    created, // ms, shown while pending
    state: 'sending', // sending | retrying | sent | failed
    inFlight: false,
    attempts: 0,
    retryAt: 0,
    seq: null, // from the ack
    error: null,
  };
}

function persistOutboxEntry(e) {
  storage.set(outboxKey(me(), e.client_msg_id), {
    room: e.room,
    body: e.body,
    client_msg_id: e.client_msg_id,
    order: e.order,
    created: e.created,
  });
}
const unpersistOutboxEntry = (e) => storage.remove(outboxKey(me(), e.client_msg_id));

// ---------------------------------------------------------------------------------------------
// 3. Session lifecycle
// ---------------------------------------------------------------------------------------------

const ui = {}; // filled in by bindUi()

/** Login and registration share the form; `mode` is "login" or "register". */
async function authenticate(mode) {
  const username = ui.loginUser.value.trim();
  const password = ui.loginPass.value;
  showLoginError('');
  if (!username || !password) {
    showLoginError('Enter a username and a password.');
    return;
  }
  ui.loginSubmit.disabled = ui.registerSubmit.disabled = true;
  try {
    const res = await api('POST', `/api/v1/${mode}`, { body: { username, password } });
    if (!res || typeof res.token !== 'string')
      throw new Error('Unexpected answer from the server.');
    const session = {
      user: typeof res.user === 'string' ? res.user : username,
      token: res.token,
      expires_at: Number.isFinite(res.expires_at) ? res.expires_at : null,
    };
    storage.set(SESSION_KEY, session);
    ui.loginPass.value = '';
    startSession(session);
  } catch (err) {
    // The server's own message, e.g. "username taken" or "invalid username or password".
    showLoginError(err.message || 'Something went wrong.');
  } finally {
    ui.loginSubmit.disabled = ui.registerSubmit.disabled = false;
  }
}

/** Starts the chat UI for a session: loads persisted state and opens the socket. */
function startSession(session) {
  state.session = session;
  state.savedCursors = loadSavedCursors(session.user);
  state.rooms = new Map();
  state.presence = new Map();
  state.outboxOrder = 0;
  state.outbox = loadOutbox(session.user);
  state.active = null;
  state.sendPausedUntil = 0;
  state.roomsListOk = false;
  showApp();

  const client = new ParleyClient({
    url: wsUrl(),
    // Built for every attempt so it always carries the latest cursors.
    authFrame: () => ({ type: 'auth', token: session.token, cursors: currentCursors() }),
    // Before each attempt: learn the room list, so that rooms we have no cursor for yet get
    // one (their last_seq) and are replayed from there on the next disconnect.
    prepare: async () => {
      await refreshRooms({ beforeConnect: true });
      await catchUpRooms();
    },
  });
  state.client = client;
  client
    .on('state', renderConnState)
    .on('welcome', onWelcome)
    .on('synced', onSynced)
    .on('frame', onFrame)
    .on('disconnected', onDisconnected)
    .on('unauthorized', () => endSession('Your session has ended. Please log in again.'));
  renderConnState(client.state);
  client.start();
}

/** Leaves the chat UI (logout, dead token). Cursors and outbox stay persisted for next time. */
function endSession(message) {
  if (!state.session) return;
  if (state.client) {
    const c = state.client;
    state.client = null;
    c.stop();
  }
  saveCursorsNow();
  clearTimers();
  storage.remove(SESSION_KEY);
  state.session = null;
  state.rooms = new Map();
  state.outbox = new Map();
  state.presence = new Map();
  state.active = null;
  showLogin(message);
}

async function logout() {
  const session = state.session;
  if (!session) return;
  ui.logout.disabled = true;
  // Stop the socket first: the server closes it (1008) on logout, and a reconnect attempt
  // with the dead token would report an expired session instead of a clean logout.
  if (state.client) state.client.stop();
  try {
    await api('POST', '/api/v1/logout', { token: session.token });
  } catch (err) {
    // 401: already dead. Network errors: log out locally anyway.
    if (err.status !== 401) console.warn('parley: logout request failed', err);
  } finally {
    ui.logout.disabled = false;
  }
  endSession('');
}

/**
 * Deletes the logged-in user's account: DELETE /api/v1/users/me with the password typed in the
 * Account panel. On 204 the socket is stopped first (the server closes it 1008 "account
 * deleted"; a reconnect with the dead token must not be tried), then the session ends with a
 * message on the login screen. Errors (401 wrong password, 400, 429 rate_limited, network) are
 * shown in the panel and the session stays. 401 is not taken as a dead session here: it is
 * also the answer to a wrong password, and a dead token ends the session through the socket.
 */
async function deleteAccount() {
  const session = state.session;
  if (!session || state.deletingAccount) return;
  const password = ui.deleteAccountPass.value;
  showDeleteAccountError('');
  if (!password) {
    showDeleteAccountError('Enter your password to confirm.');
    ui.deleteAccountPass.focus();
    return;
  }
  state.deletingAccount = true;
  ui.deleteAccountSubmit.disabled = true;
  let deleted = false;
  try {
    await api('DELETE', '/api/v1/users/me', { token: session.token, body: { password } });
    deleted = true;
  } catch (err) {
    // The server's own message, e.g. "wrong password" or "too many attempts; retry later".
    if (state.session === session) {
      showDeleteAccountError(describeError(err));
      ui.deleteAccountPass.select();
    }
  } finally {
    state.deletingAccount = false;
    ui.deleteAccountSubmit.disabled = false;
  }
  if (!deleted) return;
  // The close (1008 "account deleted") may have ended the session already; if not, stop the
  // socket before it arrives.
  if (state.session === session && state.client) state.client.stop();
  accountDeleted(session.user);
}

/**
 * The account is gone (deleted here, in another tab or on another device): ends the session
 * with ACCOUNT_DELETED_TEXT, tells this browser's other tabs, and forgets what was kept for
 * the user (cursors, unsent messages), since nobody can log in as them again.
 */
function accountDeleted(user) {
  if (state.session && state.session.user === user) {
    // Other tabs follow through the `storage` event (see bindUi) before the key is removed.
    storage.set(SESSION_KEY, { user, ended: ACCOUNT_DELETED_REASON });
    endSession(ACCOUNT_DELETED_TEXT);
  }
  storage.remove(cursorsKey(user));
  for (const key of storage.keys(`parley.outbox.${user}.`)) storage.remove(key);
  try {
    sessionStorage.removeItem(activeRoomKey(user));
  } catch {
    /* ignore */
  }
}

function onWelcome() {
  state.synced = false;
  // `watch` lasts as long as the socket: renew it on every connection.
  state.watched.clear();
  const users = [];
  for (const r of state.rooms.values()) {
    if (r.kind === 'dm') users.push(dmPeer(r.name));
    users.push(...r.people);
  }
  watchPeers(users);
  markDirty('header');
}

function onSynced() {
  state.synced = true;
  state.catchUp = false;
  if (!state.roomsListOk) refreshRoomsSoon();
  // Holes noticed while offline (should not happen) are repaired now.
  for (const room of state.rooms.values()) if (hasGap(room)) fillGap(room);
  pumpOutbox(); // re-sends everything unacknowledged, with the same client_msg_id
  scheduleRead();
}

function onDisconnected({ code, reason } = {}) {
  // The account was deleted (by this user elsewhere, or by an admin): no reconnect.
  if (code === 1008 && reason === ACCOUNT_DELETED_REASON) {
    if (state.session) accountDeleted(state.session.user);
    return;
  }
  // A resume whose replay did not fit the server's write queue: page the gaps over HTTP
  // before the next attempt (docs/protocol.md, "How to resume correctly", step 7).
  if (code === 1008 && reason === 'slow consumer' && !state.synced) state.catchUp = true;
  state.synced = false;
  // Presence and typing are only valid while connected.
  state.presence.clear();
  state.watched.clear();
  for (const room of state.rooms.values()) room.typers.clear();
  for (const e of state.outbox.values()) e.inFlight = false;
  markDirty('rooms');
  markDirty('header');
  markDirty('typing');
}

/** Dispatches every server frame that the client class does not handle itself. */
function onFrame(f) {
  switch (f.type) {
    case 'message':
      ingestMessage(f, true);
      break;
    case 'ack':
      onAck(f);
      break;
    case 'history':
      // Replies to our history requests (gap repair or paging); merged here once.
      if (typeof f.room === 'string' && Array.isArray(f.messages))
        ingestHistory(f.room, f.messages);
      break;
    case 'joined':
      onJoined(f);
      break;
    case 'left':
      if (typeof f.room === 'string') removeRoom(f.room);
      break;
    case 'invited':
      // Our own invite's reply is handled by the request; an `invited` naming us is treated
      // as an invitation from someone else.
      if (f.user === me() && typeof f.room === 'string') offerInvitation(f.room, f.by);
      break;
    case 'invitation':
      if (typeof f.room === 'string') offerInvitation(f.room, f.by);
      break;
    case 'typing':
      onTyping(f);
      break;
    case 'read':
      onReadMarker(f);
      break;
    case 'presence':
      if (typeof f.user === 'string') {
        state.presence.set(f.user, f.status === 'online' ? 'online' : 'offline');
        markDirty('rooms');
        markDirty('header');
      }
      break;
    case 'error':
      // Errors nobody asked for (no ref, or a ref we gave up on).
      notice(f.message || f.code || 'Server error', { kind: 'error' });
      break;
    default:
      // Unknown frame types are ignored so that newer servers do not break this client.
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Rooms
// ---------------------------------------------------------------------------------------------

/** The room of that name, created (with its saved cursor, if any) on first sight. */
function ensureRoom(name, kind) {
  let room = state.rooms.get(name);
  if (!room) {
    room = makeRoom(name, kind);
    state.rooms.set(name, room);
    if (room.kind === 'dm') watchPeers([dmPeer(name)]);
    markDirty('rooms');
  } else if (kind && !room.kind) {
    room.kind = kind;
  }
  return room;
}

/**
 * GET /api/v1/rooms and merge it. The list is the truth about membership: rooms missing from
 * it (and known before the request started) are dropped. Rooms seen for the first time start
 * their cursor at last_seq; the view pages older messages in with history requests.
 */
async function refreshRooms({ beforeConnect = false } = {}) {
  const session = state.session;
  if (!session) return;
  const started = performance.now();
  let res;
  try {
    res = await api('GET', '/api/v1/rooms', { token: session.token });
  } catch (err) {
    if (session === state.session) state.roomsListOk = false;
    throw err;
  }
  if (session !== state.session) return; // logged out meanwhile
  const listed = new Set();
  for (const r of (res && Array.isArray(res.rooms) && res.rooms) || []) {
    if (!r || typeof r.room !== 'string') continue;
    listed.add(r.room);
    const room = ensureRoom(r.room, r.kind);
    if (r.kind) room.kind = r.kind;
    const last = isSeq(r.last_seq) ? r.last_seq : 0;
    const read = isSeq(r.read_seq) ? r.read_seq : 0;
    if (room.cursor === undefined) {
      room.cursor = last;
    } else if (beforeConnect && room.cursor > last && room.messages.size === 0) {
      // A saved cursor beyond the room's end (e.g. a reset database): the store is the truth.
      room.cursor = last;
    }
    room.lastSeq = Math.max(room.lastSeq, last);
    room.readSeq = Math.max(room.readSeq, read);
    room.server = { last_seq: last, read_seq: read, unread: r.unread };
  }
  for (const [name, room] of [...state.rooms]) {
    if (!listed.has(name) && room.addedAt < started) removeRoom(name);
  }
  for (const name of Object.keys(state.savedCursors)) {
    if (!listed.has(name) && !state.rooms.has(name)) delete state.savedCursors[name];
  }
  state.roomsListOk = true;
  saveCursorsSoon();
  markDirty('rooms');
  markDirty('header');
  restoreActiveRoom();
}

/**
 * Pages messages after the cursor over HTTP, for rooms whose gap is too large to replay in one
 * go (the server closes such a resume with 1008 "slow consumer" before `synced`), or for every
 * room with a gap after such a close. Bounded: what is left is replayed by the resume.
 */
async function catchUpRooms() {
  const session = state.session;
  if (!session) return;
  const all = state.catchUp;
  const deadline = performance.now() + 8000;
  for (const room of [...state.rooms.values()]) {
    const last = room.server ? room.server.last_seq : room.lastSeq;
    if (!isSeq(room.cursor) || last <= room.cursor) continue;
    if (!all && last - room.cursor < CATCH_UP_GAP) continue;
    while (room.cursor < last && performance.now() < deadline) {
      const before = room.cursor + 1 + GAP_FILL_MAX;
      const res = await api(
        'GET',
        `/api/v1/rooms/${roomPath(room.name)}/messages?before=${before}&limit=${GAP_FILL_MAX}`,
        { token: session.token },
      );
      if (session !== state.session || !Array.isArray(res.messages)) return;
      const cursorBefore = room.cursor;
      ingestHistory(room.name, res.messages);
      if (room.cursor === cursorBefore) break; // nothing usable: let the resume do it
      if (res.messages.length < GAP_FILL_MAX) break;
    }
  }
}

function refreshRoomsSoon() {
  if (state.timers.refreshRooms) return; // one is coming already
  setTimer(
    'refreshRooms',
    () => {
      refreshRooms().catch((err) => {
        if (err.status === 401) endSession('Your session has ended. Please log in again.');
      });
    },
    300,
  );
}

/** `joined` (our reply, or another session / another user's DM adding us). */
function onJoined(f) {
  if (typeof f.room !== 'string') return null;
  const room = ensureRoom(f.room);
  const last = isSeq(f.last_seq) ? f.last_seq : 0;
  // Live messages of the room start after last_seq: that is where our cursor starts.
  if (room.cursor === undefined) {
    room.cursor = last;
    saveCursorsSoon();
  }
  room.lastSeq = Math.max(room.lastSeq, last);
  if (!room.kind) refreshRoomsSoon();
  markDirty('rooms');
  markDirty('header');
  return room;
}

/** Forgets a room we are no longer a member of (left here, elsewhere, or missing from list). */
function removeRoom(name) {
  if (!state.rooms.has(name) && !(name in state.savedCursors)) return;
  state.rooms.delete(name);
  delete state.savedCursors[name];
  saveCursorsSoon();
  for (const e of [...state.outbox.values()]) {
    if (e.room === name) {
      unpersistOutboxEntry(e);
      state.outbox.delete(e.client_msg_id);
    }
  }
  if (state.active === name) closeRoom();
  markDirty('rooms');
}

/** Asks for presence of users (DM peers). Renewed on every welcome. */
function watchPeers(users) {
  if (!state.client || !state.client.canSend) return; // renewed at the next welcome
  const list = [
    ...new Set(
      users.filter((u) => typeof u === 'string' && u && u !== me() && !state.watched.has(u)),
    ),
  ];
  for (let i = 0; i < list.length; i += 1000) {
    const chunk = list.slice(i, i + 1000); // the server's per-frame limit
    if (state.client.send({ type: 'watch', users: chunk }))
      for (const u of chunk) state.watched.add(u);
  }
}

/** Notes a user seen in a room (author, typist): shown in its header with a presence dot. */
function notePerson(room, user) {
  if (typeof user !== 'string' || !user || user === me() || room.people.has(user)) return;
  room.people.add(user);
  watchPeers([user]);
  if (room.name === state.active) markDirty('header');
}

function offerInvitation(roomName, by) {
  if (state.rooms.has(roomName)) return;
  const who = typeof by === 'string' && by ? `${by} invited you` : 'You were invited';
  notice(`${who} to ${roomName}.`, {
    actionLabel: 'Join',
    action: () => joinRoom(roomName),
    sticky: true,
  });
}

/** Throws unless requests can be sent right now (room actions need the server's answer). */
function connectedClient() {
  if (!state.client || !state.client.canSend) {
    throw new Error('Not connected to the server; try again in a moment.');
  }
  return state.client;
}

async function createRoom(name, visibility) {
  const r = await connectedClient().request({ type: 'create', room: name, visibility });
  const room = onJoined(r);
  if (room) {
    room.kind = visibility;
    openRoom(room.name);
  }
}

async function joinRoom(name) {
  try {
    const r = await connectedClient().request({ type: 'join', room: name });
    const room = onJoined(r);
    refreshRoomsSoon(); // learn the kind and read marker
    if (room) openRoom(room.name);
  } catch (err) {
    notice(describeError(err), { kind: 'error' });
    throw err;
  }
}

async function startDm(user) {
  const r = await connectedClient().request({ type: 'dm', user });
  const room = onJoined(r);
  if (room) {
    room.kind = 'dm';
    openRoom(room.name);
  }
}

async function inviteUser(roomName, user) {
  await connectedClient().request({ type: 'invite', room: roomName, user });
  notice(`Invited ${user} to ${roomName}.`);
}

async function leaveRoom(roomName) {
  const r = await connectedClient().request({ type: 'leave', room: roomName });
  removeRoom(typeof r.room === 'string' ? r.room : roomName);
}

/** Human text for an error from a request (server code + message) or a local failure. */
function describeError(err) {
  if (!err) return 'Something went wrong.';
  if (err.code === 'disconnected') return 'The connection dropped; try again.';
  return err.message || err.code || 'Something went wrong.';
}

// ---------------------------------------------------------------------------------------------
// 5. Messages
// ---------------------------------------------------------------------------------------------

/**
 * Takes one message into its room.
 *   streamed = true  for `message` frames (replay and live): the cursor rules apply — seq <=
 *                    cursor is a duplicate; seq > cursor + 1 means a hole to repair.
 *   streamed = false for messages from history answers: they fill the view (and holes).
 */
function ingestMessage(m, streamed) {
  if (!m || typeof m.room !== 'string' || !isSeq(m.seq) || m.seq === 0) return;
  if (!streamed && !state.rooms.has(m.room)) return; // answer for a room we have left
  const known = state.rooms.has(m.room);
  const room = ensureRoom(m.room);
  if (!known && !room.kind) refreshRoomsSoon(); // a room joined elsewhere: learn its kind
  clearEchoedSend(m, room); // an echo of our own send settles its outbox entry
  if (streamed) {
    if (room.cursor === undefined) room.cursor = m.seq - 1; // first sight: the stream starts here
    if (m.seq <= room.cursor) return; // duplicate
  }
  if (room.messages.has(m.seq)) return; // duplicate
  const msg = {
    room: m.room,
    seq: m.seq,
    from: typeof m.from === 'string' ? m.from : '?',
    body: typeof m.body === 'string' ? m.body : '',
    ts: m.ts,
    client_msg_id: m.client_msg_id,
  };
  room.messages.set(msg.seq, msg);
  room.minHeld = Math.min(room.minHeld, msg.seq);
  room.maxHeld = Math.max(room.maxHeld, msg.seq);
  room.lastSeq = Math.max(room.lastSeq, msg.seq);
  advanceCursor(room);
  if (room.typers.delete(msg.from)) markDirty('typing');
  notePerson(room, msg.from);
  if (room.name === state.active) {
    queueInsert(msg);
    scheduleRead();
  }
  markDirty('rooms');
  if (streamed && hasGap(room)) fillGap(room);
}

function ingestHistory(roomName, messages) {
  for (const m of messages) {
    if (m && typeof m === 'object') ingestMessage({ ...m, room: m.room || roomName }, false);
  }
}

/** Moves the cursor over every contiguous seq we hold. */
function advanceCursor(room) {
  if (room.cursor === undefined) return;
  const before = room.cursor;
  while (room.messages.has(room.cursor + 1)) room.cursor++;
  if (room.cursor !== before) saveCursorsSoon();
}

/** True when we hold a message beyond cursor + 1, i.e. something in between is missing. */
const hasGap = (room) => room.cursor !== undefined && room.maxHeld > room.cursor;

/**
 * Repairs a hole after the cursor with history requests (before = the first seq we hold above
 * the cursor). The protocol promises this never happens; it is here so that a bug elsewhere
 * costs a request, not a lost message.
 */
async function fillGap(room) {
  if (room.gapFilling || !hasGap(room) || !state.client || !state.client.canSend) return;
  let next = room.cursor + 1;
  while (!room.messages.has(next)) next++;
  const limit = Math.min(GAP_FILL_MAX, next - room.cursor - 1);
  console.warn(`parley: hole in ${room.name} between ${room.cursor} and ${next}; fetching`);
  room.gapFilling = true;
  let again = false;
  try {
    const res = await state.client.request({
      type: 'history',
      room: room.name,
      before: next,
      limit,
    });
    // onFrame has merged the messages already.
    if (!Array.isArray(res.messages) || res.messages.length === 0) {
      // The store has nothing there: skip the hole rather than wait forever.
      console.warn(`parley: server has no messages before ${next} in ${room.name}; skipping`);
      room.cursor = next - 1;
      advanceCursor(room);
      saveCursorsSoon();
    }
    again = true;
  } catch (err) {
    // Disconnected: the resume replays from the cursor. Other errors: retry a bit later.
    if (err.code !== 'disconnected') setTimer(`gap:${room.name}`, () => fillGap(room), 2000);
  } finally {
    room.gapFilling = false;
  }
  if (again && state.rooms.get(room.name) === room && hasGap(room)) fillGap(room);
}

/**
 * Loads one page of older messages into a room: via the socket when connected, otherwise via
 * GET /api/v1/rooms/{room}/messages. `before` is the oldest seq we hold (or cursor + 1).
 */
async function loadOlder(room) {
  if (room.loadingOlder || !room.hasOlder) return;
  const before = room.messages.size ? room.minHeld : (room.cursor ?? room.lastSeq) + 1;
  if (before <= 1) {
    room.hasOlder = false;
    markDirty('header');
    return;
  }
  const session = state.session;
  room.loadingOlder = true;
  markDirty('header');
  let ok = false;
  try {
    let res;
    if (state.client && state.client.canSend) {
      res = await state.client.request({
        type: 'history',
        room: room.name,
        before,
        limit: HISTORY_PAGE,
      });
      // onFrame has merged the messages already.
    } else {
      res = await api(
        'GET',
        `/api/v1/rooms/${roomPath(room.name)}/messages?before=${before}&limit=${HISTORY_PAGE}`,
        { token: session.token },
      );
      if (session !== state.session) return;
      if (res && Array.isArray(res.messages)) ingestHistory(room.name, res.messages);
    }
    const count = res && Array.isArray(res.messages) ? res.messages.length : 0;
    room.hasOlder = Boolean(res && res.has_more) && count > 0;
    ok = true;
  } catch (err) {
    if (err.status === 401) {
      endSession('Your session has ended. Please log in again.');
      return;
    }
    // Offline, or the socket dropped: the next scroll or room switch tries again.
    if (err.code !== 'disconnected' && err.code !== 'network') {
      notice(`Could not load older messages: ${describeError(err)}`, { kind: 'error' });
    }
  } finally {
    room.loadingOlder = false;
    markDirty('header');
  }
  // Keep paging while the view is not filled (the user cannot scroll up yet).
  if (ok && state.active === room.name) setTimer('loadMore', () => maybeLoadOlder(), 50);
}

function maybeLoadOlder() {
  const room = activeRoom();
  if (room && room.hasOlder && !room.loadingOlder && ui.scroller.scrollTop < NEAR_TOP_PX)
    loadOlder(room);
}

// ---------------------------------------------------------------------------------------------
// 6. Sending: outbox, typing, read markers
// ---------------------------------------------------------------------------------------------

/** Queues a message; it is persisted first, then sent whenever we are online. */
function sendMessage(roomName, body) {
  const now = Date.now();
  state.outboxOrder = Math.max(state.outboxOrder + 1, now * 1000);
  const e = newOutboxEntry(roomName, body, newClientMsgId(), state.outboxOrder, now);
  state.outbox.set(e.client_msg_id, e);
  persistOutboxEntry(e);
  // The others stop showing us as typing when the message arrives: the next keystroke of a
  // new message must tell them again at once.
  state.lastTypingSentAt = 0;
  markDirty('pending');
  markDirty('conn');
  pumpOutbox();
}

/**
 * Sends what the outbox holds. Only after `synced` (so that replayed echoes settle entries
 * first), one request in flight per room (so that a retried message never overtakes a later
 * one), and not while the server has told us to slow down.
 */
function pumpOutbox() {
  clearTimeout(state.timers.pump);
  const client = state.client;
  if (!client || !client.isOnline) return; // resumed by onSynced
  const now = Date.now();
  if (now < state.sendPausedUntil) {
    setTimer('pump', pumpOutbox, state.sendPausedUntil - now);
    return;
  }
  const busyRooms = new Set();
  let wake = Infinity;
  for (const e of state.outbox.values()) {
    if (e.state === 'sent' || e.state === 'failed' || busyRooms.has(e.room)) continue;
    busyRooms.add(e.room);
    if (e.inFlight) continue;
    if (e.retryAt > now) {
      wake = Math.min(wake, e.retryAt);
      continue;
    }
    transmit(e);
  }
  if (wake !== Infinity) setTimer('pump', pumpOutbox, wake - now);
}

function transmit(e) {
  e.inFlight = true;
  e.attempts++;
  const client = state.client;
  client
    .request({ type: 'send', room: e.room, client_msg_id: e.client_msg_id, body: e.body })
    .then((ack) => onAck(ack))
    .catch((err) => onSendError(e, err))
    .finally(() => {
      e.inFlight = false;
      if (state.client === client) pumpOutbox();
    });
}

/** Exponential backoff with jitter for `unavailable` and friends: 0.5 s … 10 s. */
function retryDelay(attempts) {
  const d = Math.min(10000, 500 * 2 ** Math.max(0, attempts - 1));
  return d / 2 + Math.random() * (d / 2);
}

function onSendError(e, err) {
  if (state.outbox.get(e.client_msg_id) !== e || e.state === 'sent') return; // settled already
  const now = Date.now();
  switch (err.code) {
    case 'disconnected':
      e.state = 'sending'; // re-sent after the next `synced`
      break;
    case 'rate_limited':
      // Pause every send, then retry this one (same client_msg_id) first.
      state.sendPausedUntil = now + (Number.isFinite(err.retryAfterMs) ? err.retryAfterMs : 1000);
      e.state = 'retrying';
      break;
    case 'unavailable': // store or bus down: nothing was stored
    case 'timeout': // no answer: the retry is de-duplicated if it was stored after all
      e.retryAt = now + retryDelay(e.attempts);
      e.state = 'retrying';
      break;
    case 'internal':
      if (e.attempts < 5) {
        e.retryAt = now + retryDelay(e.attempts);
        e.state = 'retrying';
        break;
      }
    // fall through: give up
    default:
      // bad_request, too_large, forbidden, not_found …: retrying cannot help.
      e.state = 'failed';
      e.error = describeError(err);
      unpersistOutboxEntry(e);
  }
  markDirty('pending');
}

/** `ack`: the message is committed. The entry stays visible ("sent") until its echo arrives. */
function onAck(ack) {
  if (!ack || typeof ack.client_msg_id !== 'string') return;
  const e = state.outbox.get(ack.client_msg_id);
  if (!e || (typeof ack.room === 'string' && ack.room !== e.room)) return;
  unpersistOutboxEntry(e);
  const room = state.rooms.get(e.room);
  if (!room || room.messages.has(ack.seq) || (isSeq(room.cursor) && ack.seq <= room.cursor)) {
    state.outbox.delete(e.client_msg_id); // echo already seen
  } else {
    e.state = 'sent';
    e.seq = ack.seq;
    e.inFlight = false;
  }
  markDirty('pending');
}

/** Our own message came back (live, replay or history): its outbox entry is done. */
function clearEchoedSend(m, room) {
  if (m.from !== me()) return;
  let e = typeof m.client_msg_id === 'string' ? state.outbox.get(m.client_msg_id) : undefined;
  if (!e) {
    for (const x of state.outbox.values()) {
      if (x.state === 'sent' && x.room === room.name && x.seq === m.seq) e = x;
    }
  }
  if (!e || e.room !== room.name) return;
  unpersistOutboxEntry(e);
  state.outbox.delete(e.client_msg_id);
  markDirty('pending');
}

function retryFailed(id) {
  const e = state.outbox.get(id);
  if (!e || e.state !== 'failed') return;
  Object.assign(e, { state: 'sending', attempts: 0, retryAt: 0, error: null });
  persistOutboxEntry(e);
  markDirty('pending');
  pumpOutbox();
}

function discardFailed(id) {
  const e = state.outbox.get(id);
  if (!e) return;
  unpersistOutboxEntry(e);
  state.outbox.delete(id);
  markDirty('pending');
}

/** Called on composer input: tells the room we are typing, at most every 3 s. */
function noteTyping() {
  const room = activeRoom();
  const now = Date.now();
  if (!room || !ui.composerInput.value || now - state.lastTypingSentAt < TYPING_SEND_EVERY_MS)
    return;
  if (state.client && state.client.send({ type: 'typing', room: room.name }))
    state.lastTypingSentAt = now;
}

function onTyping(f) {
  if (typeof f.room !== 'string' || typeof f.user !== 'string' || f.user === me()) return;
  const room = state.rooms.get(f.room);
  if (!room) return;
  room.typers.set(f.user, Date.now() + TYPING_SHOW_MS);
  notePerson(room, f.user);
  if (room.name === state.active) {
    markDirty('typing');
    setTimer('typingExpiry', () => markDirty('typing'), TYPING_SHOW_MS + 50);
  }
}

/** Another session of ours moved a read marker. */
function onReadMarker(f) {
  const room = typeof f.room === 'string' ? state.rooms.get(f.room) : null;
  if (!room || !isSeq(f.seq)) return;
  room.readSeq = Math.max(room.readSeq, f.seq);
  markDirty('rooms');
}

const scheduleRead = () => setTimer('read', sendRead, READ_DEBOUNCE_MS);

/** Sends a pending read marker now (before switching away from the room it is for). */
function flushRead() {
  if (!state.timers.read) return;
  clearTimeout(state.timers.read);
  delete state.timers.read;
  sendRead();
}

/**
 * The newest message the user can see in the open room: the newest held when the view is
 * scrolled to the bottom, otherwise the last message whose top is inside the viewport.
 */
function newestVisibleSeq(room) {
  const sc = ui.scroller;
  if (sc.scrollHeight - sc.scrollTop - sc.clientHeight < NEAR_BOTTOM_PX) return room.maxHeld;
  const bottom = sc.scrollTop + sc.clientHeight;
  const items = ui.messageList.children;
  for (let i = items.length - 1; i >= 0; i--) {
    const li = items[i];
    if (li.dataset.seq && li.offsetTop + 16 <= bottom) return Number(li.dataset.seq);
  }
  return 0;
}

/** Marks what the user has seen in the open room as read, if the page is visible. */
function sendRead() {
  const room = activeRoom();
  if (!room || document.visibilityState !== 'visible' || !ui.roomView.offsetParent) return;
  const newest = newestVisibleSeq(room);
  if (!newest || newest <= room.readSeq) return;
  if (!state.client || !state.client.send({ type: 'read', room: room.name, seq: newest })) return;
  room.readSeq = newest;
  markDirty('rooms');
}

/** Unread count shown in the room list. */
function unreadCount(room) {
  if (room.lastSeq <= room.readSeq) return 0;
  const s = room.server;
  if (s && s.last_seq === room.lastSeq && s.read_seq === room.readSeq && isSeq(s.unread))
    return s.unread;
  // Count what we know: messages from others we hold, plus every seq we do not hold.
  let n = 0;
  for (let seq = room.readSeq + 1; seq <= room.lastSeq && n < 1000; seq++) {
    const m = room.messages.get(seq);
    if (!m || m.from !== me()) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// 7. Rendering
// ---------------------------------------------------------------------------------------------

// Changes mark parts of the page dirty; one flush per task redraws them together.
const dirty = {
  rooms: false,
  header: false,
  typing: false,
  pending: false,
  view: false,
  messages: false,
  conn: false,
};
let inserts = []; // messages to add to the open room's list

function markDirty(part) {
  dirty[part] = true;
  if (!state.timers.render) setTimer('render', flushRender, 0);
}

function queueInsert(msg) {
  inserts.push(msg);
  markDirty('messages');
}

function flushRender() {
  if (!state.session) return;
  // Take the work and reset first, so that anything marked during the flush gets its own.
  const d = { ...dirty };
  for (const k of Object.keys(dirty)) dirty[k] = false;
  const batch = inserts;
  inserts = [];
  if (d.rooms) renderRoomList();
  if (d.header || d.view) renderHeader(); // shows the room view before it is measured below
  if (d.view) {
    renderView();
  } else if (batch.length || d.pending) {
    withScrollAnchor(() => {
      for (const m of batch) insertMessageEl(m);
      if (batch.length) decorateMessages();
      if (d.pending) renderPending();
    });
  }
  if (d.typing || d.view) renderTyping();
  if (d.conn || d.pending) renderConnState();
}

/** The connection pill: state, plus how many messages wait to be sent while not online. */
function renderConnState() {
  const s = state.client ? state.client.state : ConnState.IDLE;
  ui.conn.dataset.state = s;
  let text = CONN_TEXT[s] || s;
  if (s !== ConnState.ONLINE && state.session) {
    const waiting = [...state.outbox.values()].filter((e) => e.state !== 'failed').length;
    if (waiting) text += ` · ${waiting} unsent`;
  }
  ui.conn.textContent = text;
  ui.conn.title =
    s === ConnState.ONLINE
      ? 'Connected: messages arrive live.'
      : 'Not connected: messages you write are kept and sent when the connection is back.';
}

function presenceDot(user, testId = 'presence-dot') {
  const status = state.presence.get(user) || 'unknown';
  return h('span', {
    class: `dot ${status}`,
    'data-testid': testId,
    'data-user': user,
    'data-status': status,
    title: `${user} is ${status === 'unknown' ? '…' : status}`,
    role: 'img',
    'aria-label': `${user}: ${status === 'unknown' ? 'presence unknown' : status}`,
  });
}

/** Rooms in the order the list shows them: rooms first, then direct messages, by name. */
function sortedRooms() {
  return [...state.rooms.values()].sort((a, b) => {
    const da = a.kind === 'dm' ? 1 : 0;
    const db = b.kind === 'dm' ? 1 : 0;
    return da - db || roomLabel(a).localeCompare(roomLabel(b));
  });
}

/** The room list, updated in place (existing buttons are reused, so focus survives). */
function renderRoomList() {
  const rooms = sortedRooms();
  const existing = new Map([...ui.roomList.children].map((li) => [li.dataset.room, li]));
  rooms.forEach((room, i) => {
    let li = existing.get(room.name);
    existing.delete(room.name);
    if (!li) {
      li = h('li', { 'data-room': room.name });
      const btn = h('button', {
        type: 'button',
        class: 'room',
        'data-testid': 'room-item',
        'data-room': room.name,
      });
      btn.addEventListener('click', () => openRoom(room.name, { focus: true }));
      li.append(btn);
    }
    const btn = li.firstElementChild;
    const unread =
      room.name === state.active && document.visibilityState === 'visible' ? 0 : unreadCount(room);
    btn.dataset.kind = room.kind || 'unknown';
    btn.dataset.unread = String(unread);
    btn.classList.toggle('active', room.name === state.active);
    btn.classList.toggle('has-unread', unread > 0);
    li.classList.toggle('dm-start', room.kind === 'dm' && (i === 0 || rooms[i - 1].kind !== 'dm'));
    if (room.name === state.active) btn.setAttribute('aria-current', 'true');
    else btn.removeAttribute('aria-current');
    btn.setAttribute(
      'aria-label',
      `${room.kind === 'dm' ? 'Direct message with ' : ''}${roomLabel(room)}${
        unread ? `, ${unread} unread` : ''
      }`,
    );
    const peer = room.kind === 'dm' ? dmPeer(room.name) : null;
    const icon = peer
      ? presenceDot(peer)
      : h('span', { class: 'icon', 'aria-hidden': 'true' }, [
          room.kind === 'private' ? lockIcon() : '#',
        ]);
    const badge = h('span', {
      class: 'badge',
      'data-testid': 'room-unread',
      text: unread > 999 ? '999+' : String(unread),
    });
    badge.hidden = unread === 0;
    btn.replaceChildren(
      icon,
      h('span', { class: 'name', 'data-testid': 'room-name', text: roomLabel(room) }),
      badge,
    );
    if (ui.roomList.children[i] !== li)
      ui.roomList.insertBefore(li, ui.roomList.children[i] || null);
  });
  for (const li of existing.values()) li.remove();
  ui.roomListEmpty.hidden = rooms.length > 0;
  // Unread total in the tab title.
  const total = rooms.reduce((n, r) => n + (r.name === state.active ? 0 : unreadCount(r)), 0);
  document.title = total ? `(${total}) Parley` : 'Parley';
}

const PEOPLE_SHOWN = 8;

function renderHeader() {
  const room = activeRoom();
  ui.noRoom.hidden = Boolean(room);
  ui.roomView.hidden = !room;
  document.body.classList.toggle('room-open', Boolean(room));
  if (!room) return;
  ui.roomView.dataset.room = room.name;
  ui.roomView.dataset.kind = room.kind || 'unknown';
  ui.roomTitle.textContent = roomLabel(room);
  ui.roomKind.textContent =
    room.kind === 'dm'
      ? 'direct message'
      : room.kind === 'private'
        ? 'private room'
        : room.kind === 'public'
          ? 'public room'
          : '';
  const peer = room.kind === 'dm' ? dmPeer(room.name) : null;
  ui.roomPresence.replaceChildren(...(peer ? [presenceDot(peer, 'room-presence-dot')] : []));
  if (peer) {
    const s = state.presence.get(peer);
    ui.roomPresence.append(h('span', { class: 'presence-text', text: s || '' }));
  }
  // Other people seen in the room (the server has no member list): online first.
  const people = peer
    ? []
    : [...room.people].sort((a, b) => {
        const oa = state.presence.get(a) === 'online' ? 0 : 1;
        const ob = state.presence.get(b) === 'online' ? 0 : 1;
        return oa - ob || a.localeCompare(b);
      });
  ui.roomPeople.replaceChildren(
    ...people.slice(0, PEOPLE_SHOWN).map((u) => {
      const status = state.presence.get(u) || 'unknown';
      return h(
        'span',
        { class: 'person', 'data-testid': 'person', 'data-user': u, 'data-status': status },
        [presenceDot(u, 'person-dot'), h('span', { class: 'person-name', text: u })],
      );
    }),
    ...(people.length > PEOPLE_SHOWN
      ? [h('span', { class: 'person more', text: `+${people.length - PEOPLE_SHOWN}` })]
      : []),
  );
  ui.invitePanel.hidden = room.kind !== 'private';
  ui.loadOlder.hidden = !room.hasOlder;
  ui.loadOlder.disabled = room.loadingOlder;
  ui.loadOlder.textContent = room.loadingOlder ? 'Loading…' : 'Load older messages';
  ui.historyStart.hidden = room.hasOlder;
  ui.historyStart.textContent =
    room.kind === 'dm'
      ? `This is the start of your conversation with ${peer}.`
      : `This is the start of ${room.name}.`;
  ui.composerInput.placeholder =
    room.kind === 'dm'
      ? `Message ${peer}`
      : `Message ${room.kind === 'private' ? '' : '#'}${room.name}`;
}

function renderTyping() {
  const room = activeRoom();
  const now = Date.now();
  const names = room
    ? [...room.typers]
        .filter(([, until]) => until > now)
        .map(([u]) => u)
        .sort()
    : [];
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = 'Several people are typing…';
  ui.typing.textContent = text;
  ui.typing.dataset.users = names.join(',');
  if (names.length) {
    const next = Math.min(...names.map((u) => room.typers.get(u))) - now;
    setTimer('typingExpiry', () => markDirty('typing'), Math.max(50, next + 20));
  }
}

// ---- message elements ------------------------------------------------------------------------

// http(s) URLs in message text. Everything else stays text; a match becomes a link only if it
// parses as an http: or https: URL, and its text is the original characters.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING_PUNCT_RE = /[.,;:!?'"*_~]+$/;

/** Message text as nodes: Text nodes, and <a> for http(s) links. Never parses HTML. */
function richText(text) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    let raw = match[0];
    // Trailing punctuation belongs to the sentence, an unbalanced ')' to the parentheses.
    for (;;) {
      const trimmed = raw.replace(TRAILING_PUNCT_RE, '');
      if (trimmed !== raw) {
        raw = trimmed;
        continue;
      }
      if (raw.endsWith(')') && (raw.match(/\(/g) || []).length < (raw.match(/\)/g) || []).length) {
        raw = raw.slice(0, -1);
        continue;
      }
      break;
    }
    let url = null;
    try {
      url = new URL(raw);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.host) continue;
    if (match.index > last) out.push(text.slice(last, match.index));
    const a = document.createElement('a');
    a.href = url.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    a.textContent = raw;
    out.push(a);
    last = match.index + raw.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// Avatar hues, far enough apart to tell people apart at a glance.
const HUES = [212, 4, 145, 28, 268, 186, 328, 95, 48, 240, 164, 300];

/** A stable colour for a user name (FNV-1a hash into HUES). */
function hue(name) {
  let x = 0x811c9dc5;
  for (const ch of name) x = Math.imul(x ^ ch.codePointAt(0), 0x01000193) >>> 0;
  return HUES[x % HUES.length];
}

/** A small padlock (no emoji font needed). */
function lockIcon() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '13');
  svg.setAttribute('height', '13');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'lock');
  const body = document.createElementNS(NS, 'rect');
  for (const [k, v] of Object.entries({ x: 3, y: 7, width: 10, height: 7.5, rx: 1.5 }))
    body.setAttribute(k, v);
  const shackle = document.createElementNS(NS, 'path');
  shackle.setAttribute('d', 'M5.5 7V5a2.5 2.5 0 0 1 5 0v2');
  shackle.setAttribute('fill', 'none');
  shackle.setAttribute('stroke', 'currentColor');
  shackle.setAttribute('stroke-width', '1.6');
  body.setAttribute('fill', 'currentColor');
  svg.append(shackle, body);
  return svg;
}

function avatar(name) {
  const first = [...name][0] || '?';
  return h('span', {
    class: 'avatar',
    'aria-hidden': 'true',
    style: `--hue:${hue(name)}`,
    text: first.toUpperCase(),
  });
}

/** Local calendar day of a timestamp, as a sortable key. */
function dayKey(ts) {
  if (!Number.isFinite(ts)) return '';
  const d = new Date(ts);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

const dayFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'long',
  month: 'long',
  day: 'numeric',
});
const dayYearFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full' });

function dayLabel(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return (d.getFullYear() === today.getFullYear() ? dayFmt : dayYearFmt).format(d);
}

function messageEl(m) {
  const own = m.from === me();
  const t = formatTs(m.ts);
  return h(
    'li',
    {
      class: own ? 'msg own' : 'msg',
      'data-testid': 'message',
      'data-seq': m.seq,
      'data-from': m.from,
      'data-own': own ? 'true' : 'false',
      'data-day': dayKey(m.ts),
      'data-ts': Number.isFinite(m.ts) ? m.ts : '',
    },
    [
      avatar(m.from),
      h('div', { class: 'bubble' }, [
        h('div', { class: 'meta' }, [
          h('span', { class: 'from', 'data-testid': 'message-from', text: m.from }),
          own ? h('span', { class: 'you', text: 'you' }) : null,
          h('time', { datetime: t.iso, title: t.full, text: t.time }),
        ]),
        h('div', { class: 'body', 'data-testid': 'message-body', title: t.time }, richText(m.body)),
      ]),
    ],
  );
}

const PENDING_TEXT = {
  sending: 'sending…',
  retrying: 'retrying…',
  sent: 'sent',
  failed: 'not sent',
};

function pendingEl(e) {
  const status = h('span', {
    class: 'status',
    'data-testid': 'message-status',
    text: e.state === 'failed' && e.error ? `not sent: ${e.error}` : PENDING_TEXT[e.state],
  });
  const bubble = h('div', { class: 'bubble' }, [
    h('div', { class: 'meta' }, [
      h('span', { class: 'from', text: me() }),
      h('span', { class: 'you', text: 'you' }),
      status,
    ]),
    h('div', { class: 'body', 'data-testid': 'pending-body' }, richText(e.body)),
  ]);
  const li = h(
    'li',
    {
      class: `msg own pending ${e.state}`,
      'data-testid': 'pending-message',
      'data-client-msg-id': e.client_msg_id,
      'data-state': e.state,
      'data-own': 'true',
    },
    [avatar(me()), bubble],
  );
  if (e.state === 'failed') {
    const retry = h('button', {
      type: 'button',
      class: 'link',
      'data-testid': 'pending-retry',
      text: 'Retry',
    });
    const discard = h('button', {
      type: 'button',
      class: 'link',
      'data-testid': 'pending-discard',
      text: 'Discard',
    });
    retry.addEventListener('click', () => retryFailed(e.client_msg_id));
    discard.addEventListener('click', () => discardFailed(e.client_msg_id));
    bubble.append(h('div', { class: 'actions' }, [retry, discard]));
  }
  return li;
}

/** Inserts a message element in seq order (scanning from the end: usually an append). */
function insertMessageEl(m) {
  if (m.room !== state.active) return;
  const list = ui.messageList;
  let prev = list.lastElementChild;
  while (prev && (!prev.dataset.seq || Number(prev.dataset.seq) > m.seq))
    prev = prev.previousElementSibling;
  if (prev && Number(prev.dataset.seq) === m.seq) return; // already shown
  list.insertBefore(messageEl(m), prev ? prev.nextElementSibling : list.firstElementChild);
}

const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one author this close form a group

/**
 * Separators and grouping, recomputed over the list after every change: a day separator
 * before the first message of each day, a "new messages" line before the first message from
 * someone else after the read marker the room had when it was opened, and consecutive
 * messages of one author (same day, within 5 minutes) drawn as one group.
 */
function decorateMessages() {
  const room = activeRoom();
  const list = ui.messageList;
  // What the list should hold: message elements as they are, separators by key.
  const desired = [];
  let prevDay = null;
  let prevFrom = null;
  let prevTs = 0;
  let newShown = false;
  for (const el of list.children) {
    if (!el.dataset.seq) continue;
    const day = el.dataset.day;
    const ts = Number(el.dataset.ts);
    if (day && day !== prevDay) {
      desired.push({ key: `day:${day}`, day, ts });
      prevFrom = null;
    }
    if (
      !newShown &&
      room &&
      room.newAfter !== null &&
      Number(el.dataset.seq) > room.newAfter &&
      el.dataset.own === 'false'
    ) {
      desired.push({ key: 'new' });
      newShown = true;
      prevFrom = null;
    }
    el.classList.toggle('cont', el.dataset.from === prevFrom && ts - prevTs < GROUP_MS);
    desired.push(el);
    prevDay = day || prevDay;
    prevFrom = el.dataset.from;
    prevTs = ts;
  }
  // Reuse the separators already in place, so that appending a message changes nothing else.
  const seps = new Map();
  for (const el of list.children) if (!el.dataset.seq) seps.set(el.dataset.key, el);
  let at = list.firstElementChild;
  for (const d of desired) {
    let node = d;
    if (!(d instanceof Element)) {
      node = seps.get(d.key);
      seps.delete(d.key);
      if (!node) node = separatorEl(d);
      else if (d.day) {
        const label = dayLabel(d.ts); // "Today" becomes "Yesterday" after midnight
        if (node.textContent !== label) node.firstElementChild.textContent = label;
      }
    }
    if (node === at) at = at.nextElementSibling;
    else list.insertBefore(node, at);
  }
  for (const el of seps.values()) el.remove();
}

function separatorEl(d) {
  if (d.key === 'new') {
    return h(
      'li',
      { class: 'sep new', 'data-testid': 'new-divider', 'data-key': 'new', role: 'separator' },
      [h('span', { text: 'New messages' })],
    );
  }
  return h(
    'li',
    {
      class: 'sep day',
      'data-testid': 'day-separator',
      'data-key': d.key,
      'data-day': d.day,
      role: 'separator',
    },
    [h('span', { text: dayLabel(d.ts) })],
  );
}

function renderPending() {
  const room = state.active;
  const items = [...state.outbox.values()].filter((e) => e.room === room).map(pendingEl);
  ui.pendingList.replaceChildren(...items);
}

/** Full redraw of the open room (on opening it). */
function renderView() {
  const room = activeRoom();
  ui.messageList.replaceChildren();
  ui.pendingList.replaceChildren();
  if (!room) return;
  const frag = document.createDocumentFragment();
  for (const seq of [...room.messages.keys()].sort((a, b) => a - b))
    frag.append(messageEl(room.messages.get(seq)));
  ui.messageList.append(frag);
  decorateMessages();
  renderPending();
  // Open at the "new messages" line if it is not on the first screen, else at the bottom.
  const line = ui.messageList.querySelector('[data-testid="new-divider"]');
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
  if (line && line.offsetTop < ui.scroller.scrollTop) ui.scroller.scrollTop = line.offsetTop - 8;
}

/**
 * Runs a DOM change in the scroller without making the view jump: if the user was at the
 * bottom it stays at the bottom (follows new messages); otherwise the first visible message
 * keeps its position (older messages inserted above do not push the view down).
 */
function withScrollAnchor(mutate, { forceBottom = false } = {}) {
  const sc = ui.scroller;
  const atBottom = forceBottom || sc.scrollHeight - sc.scrollTop - sc.clientHeight < NEAR_BOTTOM_PX;
  let anchor = null;
  let offset = 0;
  if (!atBottom) {
    for (const li of ui.messageList.children) {
      if (li.dataset.seq && li.offsetTop + li.offsetHeight > sc.scrollTop) {
        anchor = li;
        offset = li.offsetTop - sc.scrollTop;
        break;
      }
    }
  }
  mutate();
  if (atBottom) sc.scrollTop = sc.scrollHeight;
  else if (anchor && anchor.isConnected) sc.scrollTop = anchor.offsetTop - offset;
}

function openRoom(name, { focus = false } = {}) {
  const room = state.rooms.get(name);
  if (!room) return;
  if (state.active !== name) {
    flushRead();
    const old = activeRoom();
    if (old) old.newAfter = null;
    room.newAfter = unreadCount(room) > 0 ? room.readSeq : null;
  }
  state.active = name;
  state.lastTypingSentAt = 0;
  try {
    sessionStorage.setItem(activeRoomKey(me()), name);
  } catch {
    /* ignore */
  }
  inserts = [];
  markDirty('view');
  markDirty('rooms');
  if (room.messages.size < HISTORY_PAGE) loadOlder(room);
  scheduleRead();
  // On a phone the keyboard would cover the room: focus the composer only on wide screens or
  // when the user picked the room with the keyboard.
  if (focus || window.matchMedia('(min-width: 721px)').matches) ui.composerInput.focus();
}

function closeRoom() {
  const room = activeRoom();
  if (room) {
    flushRead();
    room.newAfter = null;
  }
  state.active = null;
  try {
    sessionStorage.removeItem(activeRoomKey(me()));
  } catch {
    /* ignore */
  }
  markDirty('view');
  markDirty('rooms');
}

/** After a reload: reopen the room this tab had open. */
function restoreActiveRoom() {
  if (state.active) return;
  let name = null;
  try {
    name = sessionStorage.getItem(activeRoomKey(me()));
  } catch {
    /* ignore */
  }
  if (name && state.rooms.has(name)) openRoom(name);
}

/** A short message at the bottom of the screen, optionally with one action button. */
function notice(text, { kind = 'info', actionLabel, action, sticky = false } = {}) {
  ui.noticeText.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
  ui.noticeAction.hidden = !action;
  ui.noticeAction.textContent = actionLabel || '';
  ui.noticeAction.onclick = action
    ? () => {
        ui.notice.hidden = true;
        action();
      }
    : null;
  if (sticky) clearTimeout(state.timers.notice);
  else setTimer('notice', () => (ui.notice.hidden = true), NOTICE_MS);
}

function showLoginError(text) {
  ui.loginError.textContent = text;
  ui.loginError.hidden = !text;
}

/** The Account panel's inline error (empty text hides it). */
function showDeleteAccountError(text) {
  ui.deleteAccountError.textContent = text;
  ui.deleteAccountError.hidden = !text;
}

/** Closes the Account panel and clears it: no password stays in the page after a session. */
function resetAccountPanel() {
  ui.accountPanel.open = false;
  ui.deleteAccountForm.reset();
  ui.deleteAccountUser.value = state.session ? state.session.user : '';
  showDeleteAccountError('');
}

function showLogin(message) {
  resetAccountPanel();
  ui.appScreen.hidden = true;
  ui.loginScreen.hidden = false;
  ui.notice.hidden = true;
  document.body.classList.remove('room-open');
  document.title = 'Parley';
  showLoginError(message || '');
  ui.loginUser.focus();
}

function showApp() {
  ui.loginScreen.hidden = true;
  ui.appScreen.hidden = false;
  ui.currentUser.textContent = state.session.user;
  resetAccountPanel();
  ui.roomList.replaceChildren();
  ui.messageList.replaceChildren();
  ui.pendingList.replaceChildren();
  ui.notice.hidden = true;
  markDirty('view');
  markDirty('rooms');
}

// ---- theme -------------------------------------------------------------------------------------

const THEME_KEY = 'parley.theme';
const THEMES = ['auto', 'light', 'dark'];
const THEME_TEXT = { auto: '◐', light: '☀', dark: '☾' };

function applyTheme(theme) {
  const t = THEMES.includes(theme) ? theme : 'auto';
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  for (const b of document.querySelectorAll('button.theme')) {
    b.textContent = THEME_TEXT[t];
    b.dataset.theme = t;
    b.title = `Theme: ${t} (click to change)`;
    b.setAttribute('aria-label', `Theme: ${t}`);
  }
}

function cycleTheme() {
  const cur = storage.get(THEME_KEY) || 'auto';
  const next = THEMES[(THEMES.indexOf(cur) + 1) % THEMES.length];
  storage.set(THEME_KEY, next);
  applyTheme(next);
}

// ---------------------------------------------------------------------------------------------
// DOM wiring
// ---------------------------------------------------------------------------------------------

function bindUi() {
  const ids = {
    loginScreen: 'login-screen',
    loginForm: 'login-form',
    loginUser: 'login-username',
    loginPass: 'login-password',
    loginSubmit: 'login-submit',
    registerSubmit: 'register-submit',
    loginError: 'login-error',
    appScreen: 'app-screen',
    conn: 'connection-state',
    currentUser: 'current-user',
    logout: 'logout-button',
    accountPanel: 'account-panel',
    deleteAccountForm: 'delete-account-form',
    deleteAccountPass: 'delete-account-password',
    deleteAccountUser: 'delete-account-username',
    deleteAccountError: 'delete-account-error',
    deleteAccountSubmit: 'delete-account-submit',
    createForm: 'create-room-form',
    createName: 'create-room-name',
    createVisibility: 'create-room-visibility',
    joinForm: 'join-room-form',
    joinName: 'join-room-name',
    dmForm: 'dm-form',
    dmUser: 'dm-user',
    roomList: 'room-list',
    roomListEmpty: 'room-list-empty',
    noRoom: 'no-room',
    roomView: 'room-view',
    back: 'back-to-rooms',
    roomTitle: 'room-title',
    roomKind: 'room-kind',
    roomPresence: 'room-presence',
    roomPeople: 'room-people',
    invitePanel: 'invite-panel',
    inviteForm: 'invite-form',
    inviteUser: 'invite-user',
    leave: 'leave-room',
    scroller: 'message-scroller',
    loadOlder: 'load-older',
    historyStart: 'history-start',
    messageList: 'message-list',
    pendingList: 'pending-list',
    typing: 'typing-indicator',
    composer: 'composer',
    composerInput: 'composer-input',
    notice: 'notice',
    noticeText: 'notice-text',
    noticeAction: 'notice-action',
    noticeClose: 'notice-close',
  };
  for (const [k, id] of Object.entries(ids)) {
    ui[k] = byTestId(id);
    if (!ui[k]) throw new Error(`index.html lacks data-testid="${id}"`);
  }

  // Login / register. Enter in the form logs in; the register button is a plain button.
  ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    authenticate('login');
  });
  ui.registerSubmit.addEventListener('click', () => authenticate('register'));
  ui.logout.addEventListener('click', logout);
  ui.deleteAccountForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    deleteAccount();
  });

  /** Wires a sidebar/header form: validation, disabled while busy, errors as a notice. */
  const action = (form, run) => {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      try {
        await run();
        form.reset();
        const details = form.closest('details');
        if (details) details.open = false;
      } catch (err) {
        notice(describeError(err), { kind: 'error' });
      } finally {
        if (button) button.disabled = false;
      }
    });
  };
  const checkRoomName = (name) => {
    if (!ROOM_NAME_RE.test(name))
      throw new Error('Room names are 1–64 characters: a–z, 0–9, _ and -.');
    return name;
  };
  const checkUserName = (name) => {
    if (!USER_NAME_RE.test(name))
      throw new Error('User names are 1–32 characters: a–z, 0–9, _ . and -.');
    return name;
  };
  action(ui.createForm, () =>
    createRoom(
      checkRoomName(ui.createName.value.trim()),
      ui.createVisibility.value === 'private' ? 'private' : 'public',
    ),
  );
  ui.joinForm.addEventListener('submit', async (ev) => {
    // joinRoom shows its own errors (it is also used by invitation notices).
    ev.preventDefault();
    const name = ui.joinName.value.trim();
    if (!ROOM_NAME_RE.test(name)) {
      notice('Room names are 1–64 characters: a–z, 0–9, _ and -.', { kind: 'error' });
      return;
    }
    try {
      await joinRoom(name);
      ui.joinForm.reset();
      ui.joinForm.closest('details').open = false;
    } catch {
      /* shown by joinRoom */
    }
  });
  action(ui.dmForm, () => startDm(checkUserName(ui.dmUser.value.trim())));
  action(ui.inviteForm, () => inviteUser(state.active, checkUserName(ui.inviteUser.value.trim())));

  ui.leave.addEventListener('click', async () => {
    const name = state.active;
    if (!name) return;
    ui.leave.disabled = true;
    try {
      await leaveRoom(name);
    } catch (err) {
      notice(describeError(err), { kind: 'error' });
    } finally {
      ui.leave.disabled = false;
    }
  });
  ui.back.addEventListener('click', closeRoom);

  // Composer: Enter sends, Shift+Enter is a new line.
  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = activeRoom();
    const body = ui.composerInput.value;
    if (!room || !body.trim()) return;
    if (codePoints(body) > MAX_BODY_CODE_POINTS) {
      notice(`Messages are limited to ${MAX_BODY_CODE_POINTS} characters.`, { kind: 'error' });
      return;
    }
    sendMessage(room.name, body);
    ui.composerInput.value = '';
    autosize();
    // Our own message: always scroll to it.
    withScrollAnchor(() => {}, { forceBottom: true });
  });
  ui.composerInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      if (ui.composer.requestSubmit) ui.composer.requestSubmit();
      else ui.composer.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  const autosize = () => {
    ui.composerInput.style.height = 'auto';
    ui.composerInput.style.height = `${Math.min(ui.composerInput.scrollHeight, 160)}px`;
  };
  ui.composerInput.addEventListener('input', () => {
    autosize();
    noteTyping();
  });

  ui.scroller.addEventListener('scroll', () => {
    if (ui.scroller.scrollTop < NEAR_TOP_PX) maybeLoadOlder();
    scheduleRead(); // read markers follow what the user scrolls past
  });
  ui.loadOlder.addEventListener('click', () => {
    const room = activeRoom();
    if (room) loadOlder(room);
  });

  ui.noticeClose.addEventListener('click', () => (ui.notice.hidden = true));

  for (const b of document.querySelectorAll('button.theme'))
    b.addEventListener('click', cycleTheme);

  // Keyboard: Alt+↑ / Alt+↓ move between rooms, Escape closes what is open (a panel, the
  // notice, or — at phone width — the room).
  document.addEventListener('keydown', (ev) => {
    if (!state.session) return;
    if (
      ev.altKey &&
      !ev.ctrlKey &&
      !ev.metaKey &&
      (ev.key === 'ArrowUp' || ev.key === 'ArrowDown')
    ) {
      const rooms = sortedRooms();
      if (!rooms.length) return;
      ev.preventDefault();
      const i = rooms.findIndex((r) => r.name === state.active);
      const step = ev.key === 'ArrowUp' ? -1 : 1;
      const next =
        i < 0 ? (step > 0 ? 0 : rooms.length - 1) : (i + step + rooms.length) % rooms.length;
      openRoom(rooms[next].name, { focus: true });
      return;
    }
    if (ev.key === 'Escape') {
      const open = [...document.querySelectorAll('details[open]')];
      if (open.length) {
        for (const d of open) d.open = false;
        const summary = open[0].querySelector('summary');
        if (summary) summary.focus();
      } else if (!ui.notice.hidden) {
        ui.notice.hidden = true;
      } else if (state.active && window.matchMedia('(max-width: 720px)').matches) {
        const name = state.active;
        closeRoom();
        const btn = ui.roomList.querySelector(
          `[data-testid="room-item"][data-room="${CSS.escape(name)}"]`,
        );
        if (btn) setTimeout(() => btn.focus(), 0);
      } else {
        return;
      }
      ev.preventDefault();
    }
  });
  // Opening one panel of the sidebar closes the others and focuses its first field.
  for (const d of document.querySelectorAll('details')) {
    d.addEventListener('toggle', () => {
      if (!d.open) return;
      for (const other of document.querySelectorAll('details[open]'))
        if (other !== d) other.open = false;
      const field = d.querySelector('input, select');
      if (field) field.focus();
    });
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      scheduleRead();
      // The server tells other sessions about joins and leaves only through their messages:
      // coming back to the tab is a good moment to pick up membership changes.
      if (state.session) refreshRoomsSoon();
      markDirty('rooms');
    }
  });
  window.addEventListener('pagehide', saveCursorsNow);
  // Logged out, or the account deleted, in another tab: follow.
  window.addEventListener('storage', (ev) => {
    if (ev.key !== SESSION_KEY || !state.session) return;
    if (ev.newValue === null) {
      endSession('You logged out in another tab.');
      return;
    }
    let v = null;
    try {
      v = JSON.parse(ev.newValue);
    } catch {
      /* not ours */
    }
    if (v && v.ended === ACCOUNT_DELETED_REASON && v.user === me()) accountDeleted(v.user);
  });
}

/** Entry point: resume a stored session or show the login form. */
function main() {
  applyTheme(storage.get(THEME_KEY));
  bindUi();
  const saved = storage.get(SESSION_KEY);
  const valid =
    saved &&
    typeof saved.user === 'string' &&
    typeof saved.token === 'string' &&
    (!Number.isFinite(saved.expires_at) || saved.expires_at * 1000 > Date.now());
  if (valid) {
    startSession(saved);
  } else {
    if (saved) storage.remove(SESSION_KEY);
    // A tab that deleted the account leaves {user, ended} in the key for a moment (see
    // accountDeleted); a reload caught in between shows what happened.
    const ended = saved && saved.ended === ACCOUNT_DELETED_REASON;
    showLogin(
      ended ? ACCOUNT_DELETED_TEXT : saved ? 'Your session has expired. Please log in again.' : '',
    );
  }
}

main();
