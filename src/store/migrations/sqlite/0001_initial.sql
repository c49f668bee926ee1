-- The initial Parley schema for SQLite. Times are unix milliseconds except tokens.expires_at,
-- which is unix seconds because that is what the HTTP API returns. Names are the keys: users
-- and rooms are never renamed, and keying by name saves a join on every hot query.

CREATE TABLE users (
  name          TEXT    NOT NULL PRIMARY KEY,
  password_hash TEXT    NOT NULL,
  created_at    INTEGER NOT NULL,
  is_admin      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Only a hash of each token is stored, so a copy of the database does not hand out sessions.
CREATE TABLE tokens (
  hash       TEXT    NOT NULL PRIMARY KEY,
  user       TEXT    NOT NULL REFERENCES users(name),
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_by_user ON tokens(user);

-- last_seq is the per-room message counter: append bumps it in the same transaction as the
-- insert, which is what makes seqs gapless (an AUTOINCREMENT or sequence would leave holes
-- when a transaction rolls back).
CREATE TABLE rooms (
  name       TEXT    NOT NULL PRIMARY KEY,
  kind       TEXT    NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
  last_seq   INTEGER NOT NULL DEFAULT 0,
  created_by TEXT    NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- read_seq is the member's read marker. It lives on the membership row because a marker has
-- no meaning outside a membership; a new membership starts at the room's last_seq.
CREATE TABLE members (
  room      TEXT    NOT NULL REFERENCES rooms(name),
  user      TEXT    NOT NULL REFERENCES users(name),
  read_seq  INTEGER NOT NULL DEFAULT 0,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (room, user)
) WITHOUT ROWID;
-- list_rooms walks a user's memberships.
CREATE INDEX members_by_user ON members(user, room);

-- An invitation lets one user join one private room once; joining consumes it.
CREATE TABLE invites (
  room       TEXT    NOT NULL REFERENCES rooms(name),
  user       TEXT    NOT NULL REFERENCES users(name),
  invited_by TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (room, user)
) WITHOUT ROWID;

-- Messages are clustered by (room, seq), so history and resume reads are one range scan. The
-- unique key on (room, sender, client_msg_id) is what makes a retried send idempotent. There is
-- no foreign key to rooms here: append checks membership in the same transaction, and a
-- foreign-key probe per insert would only repeat that check on the hottest path.
CREATE TABLE messages (
  room          TEXT    NOT NULL,
  seq           INTEGER NOT NULL,
  sender        TEXT    NOT NULL,
  client_msg_id TEXT    NOT NULL,
  body          TEXT    NOT NULL,
  ts_ms         INTEGER NOT NULL,
  PRIMARY KEY (room, seq),
  UNIQUE (room, sender, client_msg_id)
) WITHOUT ROWID;
