"""Creates links for bench/stress.sh: PORT [COUNT=20000], 16 concurrent clients, URLs of 30
to 230 bytes; prints the codes, one per line. Fails on the first refused create.

With STRESS_CHHOTO_KEY set, the links are created through chhoto-url's API instead
(`POST /api/new` with that key in `X-API-Key`)."""

import http.client
import json
import os
import random
import sys
import threading

port = int(sys.argv[1])
total = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
codes: list[str] = []
failures: list[str] = []
lock = threading.Lock()
numbers = iter(range(total))
chhoto_key = os.environ.get("STRESS_CHHOTO_KEY")


def create(conn: http.client.HTTPConnection, url: str) -> tuple[int, bytes]:
    if chhoto_key:
        headers = {"Content-Type": "application/json", "X-API-Key": chhoto_key}
        conn.request("POST", "/api/new", json.dumps({"longlink": url}), headers)
    else:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/api/v1/links", json.dumps({"url": url}), headers)
    answer = conn.getresponse()
    return answer.status, answer.read()


def code_of(body: bytes) -> str:
    reply = json.loads(body)
    return reply["shorturl"].rsplit("/", 1)[1] if chhoto_key else reply["code"]


def client(seed: int) -> None:
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    while not failures:
        with lock:
            n = next(numbers, None)
        if n is None:
            return
        base = f"https://example.com/stress/{n}/"
        url = base + "x" * max(0, rnd.randint(30, 230) - len(base))
        status, text = create(conn, url)
        with lock:
            if status in (200, 201):
                codes.append(code_of(text))
            else:
                failures.append(f"{status}: {text[:200]!r}")


threads = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"a create was refused: {failures[0]}")
print("\n".join(codes))
