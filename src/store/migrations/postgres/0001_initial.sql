-- The initial Parley schema for PostgreSQL, the same model as SQLite's 0001_initial.sql. Times are
-- unix milliseconds except tokens.expires_at, which is unix seconds because that is what the HTTP
-- API returns. Names are the keys: users and rooms are never renamed, and keying by name saves a
-- join on every hot query.
--
-- Names use the "C" collation so that ordering (list_rooms, and the sorted room locks every
-- writer takes) is byte order on every node whatever the database's locale, exactly as in SQLite.
-- "user" is a reserved word here, so membership columns are called user_name.

CREATE TABLE users (
  name          text COLLATE "C" NOT NULL PRIMARY KEY,
  password_hash text    NOT NULL,
  created_at    bigint  NOT NULL,
  is_admin      boolean NOT NULL DEFAULT false
);

-- Only a hash of each token is stored, so a copy of the database does not hand out sessions.
CREATE TABLE tokens (
  hash       text COLLATE "C" NOT NULL PRIMARY KEY,
  user_name  text COLLATE "C" NOT NULL REFERENCES users (name),
  expires_at bigint NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_name);

-- last_seq is the per-room message counter: append bumps it in the same transaction as the
-- insert, which is what makes seqs gapless (a SEQUENCE would leave holes when a transaction
-- rolls back). Every writer locks the rows of the rooms it writes to, in name order, before
-- touching them, so the row is also the room's write lock across nodes. It is updated on every
-- batch, so the table leaves room in each page for HOT updates.
CREATE TABLE rooms (
  name       text COLLATE "C" NOT NULL PRIMARY KEY,
  kind       text   NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
  last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
  created_by text   NOT NULL,
  created_at bigint NOT NULL
) WITH (fillfactor = 70);

-- read_seq is the member's read marker. It lives on the membership row because a marker has
-- no meaning outside a membership; a new membership starts at the room's last_seq.
CREATE TABLE members (
  room      text COLLATE "C" NOT NULL REFERENCES rooms (name),
  user_name text COLLATE "C" NOT NULL REFERENCES users (name),
  read_seq  bigint NOT NULL DEFAULT 0,
  joined_at bigint NOT NULL,
  PRIMARY KEY (room, user_name)
) WITH (fillfactor = 80);
-- list_rooms walks a user's memberships.
CREATE INDEX members_by_user ON members (user_name, room);

-- An invitation lets one user join one private room once; joining consumes it.
CREATE TABLE invites (
  room       text COLLATE "C" NOT NULL REFERENCES rooms (name),
  user_name  text COLLATE "C" NOT NULL REFERENCES users (name),
  invited_by text   NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (room, user_name)
);

-- Messages are keyed by (room, seq), so history and resume reads are one index range scan. The
-- unique key on (room, sender, client_msg_id) is what makes a retried send idempotent.
-- client_msg_id and body are bytea because the protocol stores them byte for byte and allows
-- "\u0000" in them, which a PostgreSQL text value cannot hold. There is no foreign key to rooms:
-- append checks membership in the same transaction, and a foreign-key probe per insert would
-- only repeat that check on the hottest path.
CREATE TABLE messages (
  room          text COLLATE "C" NOT NULL,
  seq           bigint NOT NULL,
  sender        text COLLATE "C" NOT NULL,
  client_msg_id bytea  NOT NULL,
  body          bytea  NOT NULL,
  ts_ms         bigint NOT NULL,
  PRIMARY KEY (room, seq),
  UNIQUE (room, sender, client_msg_id)
);
