-- User deletion (Store::delete_user). A deleted user's row stays as a tombstone, with the time of
-- the deletion in deleted_at (unix ms; NULL while the user exists): the name stays reserved, so
-- that the messages the user sent, which stay in their rooms under that name, are never
-- attributed to someone who registers it later. Tokens, memberships and invitations of the user
-- are deleted with it.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- delete_user removes a user's invitations; the primary key starts with the room, so finding
-- them by user needs an index of its own (tokens and members have one already).
CREATE INDEX invites_by_user ON invites(user, room);
