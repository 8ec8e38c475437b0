-- Portable across PostgreSQL and SQLite: times are Unix milliseconds so both
-- backends store and compare them the same way.
CREATE TABLE links (
    code       TEXT    PRIMARY KEY,
    url        TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT,
    clicks     BIGINT  NOT NULL DEFAULT 0
);
