"""Creates links for bench/stress.sh: PORT [COUNT=20000], 16 concurrent clients, URLs of 30
to 230 bytes; prints the codes, one per line. Fails on the first refused create."""

import http.client
import json
import random
import sys
import threading

port = int(sys.argv[1])
total = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
codes: list[str] = []
failures: list[str] = []
lock = threading.Lock()
numbers = iter(range(total))


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
        body = json.dumps({"url": url})
        conn.request("POST", "/api/v1/links", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        text = answer.read()
        with lock:
            if answer.status in (200, 201):
                codes.append(json.loads(text)["code"])
            else:
                failures.append(f"{answer.status}: {text[:200]!r}")


threads = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"a create was refused: {failures[0]}")
print("\n".join(codes))
