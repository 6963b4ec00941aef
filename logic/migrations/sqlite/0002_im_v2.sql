-- IM, second edition: edits, recalls and reactions kept as events in the seq stream; blocking;
-- account deletion; full-text message search (FTS5); indexes for the per-user limits and receipts.

ALTER TABLE users ADD COLUMN deleted_at INTEGER;

ALTER TABLE messages ADD COLUMN ref_seq INTEGER;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN recalled INTEGER NOT NULL DEFAULT 0;

-- What search finds: the current text of text messages that were not recalled, kept in step by the
-- triggers below (an external-content FTS5 table over messages).
CREATE VIRTUAL TABLE messages_fts USING fts5(content, content = 'messages', content_rowid = 'id', tokenize = 'unicode61');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.kind = 'text' AND new.recalled = 0 BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
-- One trigger, so that the old entry is always removed before the new one is added (two triggers on
-- one event fire in an order SQLite does not promise, and the reverse order corrupts the index).
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, recalled ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content)
        SELECT 'delete', old.id, old.content WHERE old.kind = 'text' AND old.recalled = 0;
    INSERT INTO messages_fts (rowid, content)
        SELECT new.id, new.content WHERE new.kind = 'text' AND new.recalled = 0;
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.kind = 'text' AND old.recalled = 0 BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TABLE reactions (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    emoji           TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id, emoji)
);

CREATE TABLE blocks (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    blocked_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

CREATE INDEX user_conversations_reads ON user_conversations (conversation_id, read_seq);
CREATE INDEX friend_requests_sent ON friend_requests (from_id, created_at);
CREATE INDEX chat_groups_owner ON chat_groups (owner_id, created_at);
CREATE INDEX uploads_owner ON uploads (owner_id, created_at);
CREATE INDEX friendships_friend ON friendships (friend_id);
