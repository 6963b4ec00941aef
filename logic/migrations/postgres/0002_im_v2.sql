-- IM, second edition: edits, recalls and reactions kept as events in the seq stream; blocking;
-- account deletion; full-text message search; indexes for the per-user limits and read receipts.

ALTER TABLE users ADD COLUMN deleted_at BIGINT;

ALTER TABLE messages ADD COLUMN ref_seq BIGINT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN recalled BIGINT NOT NULL DEFAULT 0;
-- What search finds: the current text of text messages that were not recalled.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS
    (to_tsvector('simple', CASE WHEN kind = 'text' AND recalled = 0 THEN content ELSE '' END)) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE TABLE reactions (
    conversation_id TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    emoji           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id, emoji)
);

CREATE TABLE blocks (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    blocked_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

CREATE INDEX user_conversations_reads ON user_conversations (conversation_id, read_seq);
CREATE INDEX friend_requests_sent ON friend_requests (from_id, created_at);
CREATE INDEX chat_groups_owner ON chat_groups (owner_id, created_at);
CREATE INDEX uploads_owner ON uploads (owner_id, created_at);
CREATE INDEX friendships_friend ON friendships (friend_id);
