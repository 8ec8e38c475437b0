-- PostgreSQL (SQLite's twin is migrations/sqlite/0003_clicks_apart.sql): click counts in a
-- narrow table of their own. A flush updates every clicked link every few seconds; in
-- `links` each update wrote a new version of the whole row, URL included, where here it
-- writes a code and a number (docs/service-memory.md, "Clicks apart").
CREATE TABLE link_clicks (
    code   TEXT    PRIMARY KEY,
    clicks BIGINT  NOT NULL
);

INSERT INTO link_clicks (code, clicks)
SELECT code, clicks FROM links WHERE clicks > 0;

ALTER TABLE links DROP COLUMN clicks;
