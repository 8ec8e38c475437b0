#!/usr/bin/env python3
"""What a click flush costs SQLite, by table layout and by the order of the updates.

The shortener writes buffered click counts every 2 s in statements of 64 rows
(`UPDATE links ... FROM (VALUES ...)`, as `service/src/store.rs` does). Under a load of
random redirects over N links, nearly every link has clicks at each flush. This script
builds the links table both ways (a rowid table with its index on `code`, as before
migration 0002, and `WITHOUT ROWID`, ordered by code, as after it), with the service's
pragmas (WAL, synchronous FULL, a 512 KiB page cache), fills it with N links of random
7-character codes and URLs of 30-230 bytes, then flushes a count for every link, in random
order and in code order. It prints, side by side, what a flush costs in reads and writes
(system calls and bytes, from /proc/self/io: stable on a noisy machine, unlike time) and the
median time of a flush. Each layout's WAL grows by the same number of pages a flush: the
difference is how often the 512 KiB page cache has to give a page up and read it back (and
rewrite its WAL frame), which is every few updates when they come in random order. Python's
own SQLite runs the statements, not the service's bundled copy.

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
LAYOUTS = {
    "rowid table, index on code": "",
    "WITHOUT ROWID (by code)": " WITHOUT ROWID",
}


def build(path, layout, codes, rng):
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -512"):
        db.execute(f"PRAGMA {pragma}")
    db.execute(
        "CREATE TABLE links (code TEXT PRIMARY KEY, url TEXT NOT NULL, created_at BIGINT NOT NULL, "
        f"expires_at BIGINT, clicks BIGINT NOT NULL DEFAULT 0){layout}"
    )
    db.execute("BEGIN")
    for code in codes:
        url = "https://example.com/" + "x" * rng.randint(10, 210)
        db.execute("INSERT INTO links (code, url, created_at) VALUES (?, ?, 0)", (code, url))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    return db


def flush(db, codes):
    db.execute("BEGIN")
    for start in range(0, len(codes), BATCH):
        chunk = codes[start : start + BATCH]
        values = ", ".join(["(?, ?)"] * len(chunk))
        params = [value for code in chunk for value in (code, 1)]
        db.execute(
            "UPDATE links SET clicks = links.clicks + v.column2 "
            f"FROM (VALUES {values}) AS v WHERE links.code = v.column1",
            params,
        )
    db.execute("COMMIT")


def io():
    with open("/proc/self/io") as f:
        return {key: int(value) for key, value in (line.split(": ") for line in f)}


def measure(layout, order, codes, flushes):
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as dir:
        path = os.path.join(dir, "links.db")
        db = build(path, layout, codes, rng)
        samples = []
        for _ in range(flushes):
            batch = sorted(codes) if order == "code order" else rng.sample(codes, len(codes))
            before = io()
            started = time.perf_counter()
            flush(db, batch)
            elapsed = time.perf_counter() - started
            after = io()
            samples.append(
                (
                    after["syscr"] - before["syscr"],
                    after["syscw"] - before["syscw"],
                    (after["wchar"] - before["wchar"]) / 1024,
                    elapsed * 1000,
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
    print("| table | update order | reads | writes | KiB written | ms per flush |")
    print("|---|---|---|---|---|---|")
    for name, layout in LAYOUTS.items():
        for order in ("random order", "code order"):
            reads, writes, written, ms = measure(layout, order, codes, flushes)
            print(f"| {name} | {order} | {reads:.0f} | {writes:.0f} | {written:.0f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
