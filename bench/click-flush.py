#!/usr/bin/env python3
"""What a click flush costs SQLite, by table layout and by the order of the updates.

The shortener writes buffered click counts every 2 s in statements of 64 rows. Under a load
of random redirects over N links, nearly every link has clicks at each flush. This script
builds the tables three ways, with the service's pragmas (WAL, synchronous FULL, a 512 KiB
page cache): counts in `links`, a rowid table with its index on `code` (before migration
0002); counts in `links` made `WITHOUT ROWID`, ordered by code (0002); counts in a narrow
`link_clicks` table of their own, also ordered by code (0003, what `service/src/store.rs`
writes now). It fills them with N links of random 7-character codes and URLs of 30-230
bytes, then flushes a count for every link, in random order and in code order. It prints,
side by side, what a flush costs in reads and writes (system calls and bytes, from
/proc/self/io: stable on a noisy machine, unlike time), the median time of a flush and the
CPU time it took. With counts in `links`, each update rewrites the link's whole row and in
random order the 512 KiB page cache has to give a page up and read it back (and rewrite its
WAL frame) every few updates; in code order each page is written once; in `link_clicks` a
page holds ten times as many counts. Python's own SQLite runs the statements, not the
service's bundled copy.

    python3 bench/click-flush.py [LINKS] [FLUSHES]     # defaults 20000 and 5
"""

import os
import random
import sqlite3
import statistics
import string
import sys
import tempfile
import time

BATCH = 64
LINKS = (
    "CREATE TABLE links (code TEXT PRIMARY KEY, url TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "expires_at BIGINT{clicks}){layout}"
)
IN_LINKS = (
    "UPDATE links SET clicks = links.clicks + v.column2 "
    "FROM (VALUES {values}) AS v WHERE links.code = v.column1"
)
APART = (
    "INSERT INTO link_clicks (code, clicks) SELECT v.column1, v.column2 FROM (VALUES {values}) AS v "
    "JOIN links ON links.code = v.column1 WHERE true "
    "ON CONFLICT (code) DO UPDATE SET clicks = link_clicks.clicks + excluded.clicks"
)
CLICKS_COLUMN = ", clicks BIGINT NOT NULL DEFAULT 0"
# name: (statements creating the tables, a flush statement's template)
LAYOUTS = {
    "links, rowid table, index on code": ([LINKS.format(clicks=CLICKS_COLUMN, layout="")], IN_LINKS),
    "links WITHOUT ROWID (by code)": (
        [LINKS.format(clicks=CLICKS_COLUMN, layout=" WITHOUT ROWID")],
        IN_LINKS,
    ),
    "link_clicks apart, both by code": (
        [
            LINKS.format(clicks="", layout=" WITHOUT ROWID"),
            "CREATE TABLE link_clicks (code TEXT PRIMARY KEY, clicks BIGINT NOT NULL) WITHOUT ROWID",
        ],
        APART,
    ),
}


def build(path, tables, codes, rng):
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -512"):
        db.execute(f"PRAGMA {pragma}")
    for table in tables:
        db.execute(table)
    db.execute("BEGIN")
    for code in codes:
        url = "https://example.com/" + "x" * rng.randint(10, 210)
        db.execute("INSERT INTO links (code, url, created_at) VALUES (?, ?, 0)", (code, url))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    return db


def flush(db, template, codes):
    db.execute("BEGIN")
    for start in range(0, len(codes), BATCH):
        chunk = codes[start : start + BATCH]
        values = ", ".join(["(?, ?)"] * len(chunk))
        params = [value for code in chunk for value in (code, 1)]
        db.execute(template.format(values=values), params)
    db.execute("COMMIT")


def io():
    with open("/proc/self/io") as f:
        return {key: int(value) for key, value in (line.split(": ") for line in f)}


def measure(tables, template, order, codes, flushes):
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as dir:
        path = os.path.join(dir, "links.db")
        db = build(path, tables, codes, rng)
        # The first flush of `link_clicks` inserts its rows; the ones measured update them.
        flush(db, template, codes)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        samples = []
        for _ in range(flushes):
            batch = sorted(codes) if order == "code order" else rng.sample(codes, len(codes))
            before = io()
            started, cpu = time.perf_counter(), time.process_time()
            flush(db, template, batch)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            after = io()
            samples.append(
                (
                    after["syscr"] - before["syscr"],
                    after["syscw"] - before["syscw"],
                    (after["wchar"] - before["wchar"]) / 1024,
                    elapsed * 1000,
                    cpu * 1000,
                )
            )
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    return [statistics.median(column) for column in zip(*samples)]


def main():
    links = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    flushes = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits
    codes = list({"".join(rng.choices(alphabet, k=7)) for _ in range(links)})
    print(f"click flush of {len(codes)} links, {BATCH} rows a statement, median of {flushes} flushes "
          f"(SQLite {sqlite3.sqlite_version})")
    print("| counts in | update order | reads | writes | KiB written | ms per flush | CPU ms |")
    print("|---|---|---|---|---|---|---|")
    for name, (tables, template) in LAYOUTS.items():
        for order in ("random order", "code order"):
            reads, writes, written, ms, cpu = measure(tables, template, order, codes, flushes)
            print(f"| {name} | {order} | {reads:.0f} | {writes:.0f} | {written:.0f} | {ms:.0f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
