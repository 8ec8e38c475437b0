-- SQLite only (the shared migrations are in the folder above): keep links in a
-- table ordered by code (WITHOUT ROWID) instead of a rowid table with a separate
-- index on code. Every access is by code: a lookup reads
-- one B-tree instead of two, and a click flush, which updates its links in code order,
-- writes each page of the table once. With rowids in creation order and random codes,
-- the same flush touched the table's pages at random and rewrote them many times over
-- through a small page cache (docs/service-memory.md, "Clicks in code order").
CREATE TABLE links_by_code (
    code       TEXT    PRIMARY KEY,
    url        TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT,
    clicks     BIGINT  NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO links_by_code (code, url, created_at, expires_at, clicks)
SELECT code, url, created_at, expires_at, clicks FROM links;

DROP TABLE links;

ALTER TABLE links_by_code RENAME TO links;
