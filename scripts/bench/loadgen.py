"""A small HTTP/1.1 keep-alive load generator (used when `wrk` is not installed).

python loadgen.py URL SECONDS CONNECTIONS [METHOD] [BODY_FILE] [HEADER...] -> prints requests/s

`@CONN@` in the body becomes each connection's number (one session per connection, say).
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit


async def worker(host: str, port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    while time.perf_counter() < deadline:
        writer.write(request)
        status = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        if status.split()[1][:1] in (b"2",):
            n += 1
    counts.append(n)
    writer.close()


async def main() -> None:
    url, seconds, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    method = sys.argv[4] if len(sys.argv) > 4 else "GET"
    body = b""
    if len(sys.argv) > 5 and sys.argv[5] != "-":
        with open(sys.argv[5], "rb") as f:
            body = f.read()
    headers = sys.argv[6:]
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")

    def request(n: int) -> bytes:
        mine = body.replace(b"@CONN@", str(n).encode())
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {parts.hostname}",
            f"Content-Length: {len(mine)}",
            "Content-Type: application/json",
            *headers,
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + mine

    counts: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            worker(parts.hostname or "127.0.0.1", parts.port or 80, request(n), deadline, counts)
            for n in range(conns)
        )
    )
    print(f"{sum(counts) / (time.perf_counter() - start):.1f}")


if __name__ == "__main__":
    asyncio.run(main())
