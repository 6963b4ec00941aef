-- The IM tier's stores. Times are unix milliseconds; user ids are the push platform's mids.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_no    TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    nickname      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    avatar        TEXT NOT NULL DEFAULT '',
    signature     TEXT NOT NULL DEFAULT '',
    sex           TEXT NOT NULL DEFAULT 'unknown',
    birthday      TEXT NOT NULL DEFAULT '',
    location      TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);
CREATE INDEX users_nickname ON users (nickname);

CREATE TABLE auth_sessions (
    jti        TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

CREATE TABLE friend_groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE friendships (
    user_id         INTEGER NOT NULL REFERENCES users (id),
    friend_id       INTEGER NOT NULL REFERENCES users (id),
    friend_group_id INTEGER NOT NULL REFERENCES friend_groups (id),
    remark          TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE friend_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    from_id         INTEGER NOT NULL REFERENCES users (id),
    to_id           INTEGER NOT NULL REFERENCES users (id),
    note            TEXT NOT NULL DEFAULT '',
    friend_group_id INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    created_at      INTEGER NOT NULL,
    handled_at      INTEGER
);
CREATE INDEX friend_requests_to ON friend_requests (to_id, status);
CREATE INDEX friend_requests_from ON friend_requests (from_id, status);

CREATE TABLE chat_groups (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_no      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    avatar        TEXT NOT NULL DEFAULT '',
    owner_id      INTEGER NOT NULL REFERENCES users (id),
    max_members   INTEGER NOT NULL,
    need_approval INTEGER NOT NULL DEFAULT 0,
    all_muted     INTEGER NOT NULL DEFAULT 0,
    dismissed     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE INDEX chat_groups_name ON chat_groups (name);

CREATE TABLE group_members (
    group_id    INTEGER NOT NULL REFERENCES chat_groups (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL DEFAULT 'member',
    muted_until INTEGER NOT NULL DEFAULT 0,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_join_requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id   INTEGER NOT NULL REFERENCES chat_groups (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    note       TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'pending',
    handled_by INTEGER,
    created_at INTEGER NOT NULL,
    handled_at INTEGER
);
CREATE INDEX group_join_requests_group ON group_join_requests (group_id, status);

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- A user's view of a conversation: what they have read, and the first seq they may see.
CREATE TABLE user_conversations (
    user_id         INTEGER NOT NULL REFERENCES users (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    read_seq        INTEGER NOT NULL DEFAULT 0,
    min_seq         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL,
    client_msg_id   TEXT NOT NULL,
    kind            TEXT NOT NULL,
    content         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    is_read    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX notifications_user ON notifications (user_id, id);

CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    data         BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
