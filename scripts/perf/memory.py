#!/usr/bin/env python3
"""heal7-proxy's memory: resident bytes per idle client connection, and
whether many distinct statements grow it past the rewrite cache's bound.

Runs the proxy against a tiny fake upstream (accepts any startup, answers
every Query with CommandComplete + ReadyForQuery), so only the proxy's own
memory is measured and no Postgres is needed:

  scripts/perf/memory.py --clients 1000
  scripts/perf/memory.py --statements 10000 --cache-bytes 4194304

Needs a built binary (default target/release/heal7-proxy).
"""

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def frame(tag, body):
    return tag + struct.pack("!i", len(body) + 4) + body


async def fake_upstream(reader, writer):
    try:
        head = await reader.readexactly(4)
        (n,) = struct.unpack("!i", head)
        await reader.readexactly(n - 4)
        writer.write(
            frame(b"R", struct.pack("!i", 0))
            + frame(b"K", struct.pack("!ii", 4242, 1))
            + frame(b"Z", b"I")
        )
        await writer.drain()
        while True:
            tag = await reader.readexactly(1)
            (n,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(n - 4)
            if tag == b"X":
                break
            if tag == b"Q":
                writer.write(frame(b"C", b"SELECT 0\0") + frame(b"Z", b"I"))
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    writer.close()


def startup(db):
    body = struct.pack("!i", 196608) + b"user\0bench\0database\0" + db.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


async def read_until_ready(reader):
    while True:
        tag = await reader.readexactly(1)
        (n,) = struct.unpack("!i", await reader.readexactly(4))
        await reader.readexactly(n - 4)
        if tag == b"Z":
            return


async def connect(port, db):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(startup(db))
    await writer.drain()
    await read_until_ready(reader)
    return reader, writer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main_async(args):
    upstream = await asyncio.start_server(fake_upstream, "127.0.0.1", 0, backlog=4096)
    up_port = upstream.sockets[0].getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="heal7-mem."))
    port = free_port()
    cfg = work / "proxy.yaml"
    cfg.write_text(
        f"""proxy:
  listen: 127.0.0.1:{port}
databases:
  bench:
    host: 127.0.0.1
    port: {up_port}
    database: bench
    schemas:
      shared_common: {{tables: [users, user_profiles, attachments]}}
"""
    )
    env = {**os.environ, "RUST_LOG": "heal7_proxy=warn"}
    if args.cache_bytes is not None:
        env["HEAL7_REWRITE_CACHE_BYTES"] = str(args.cache_bytes)
    proxy = subprocess.Popen([args.binary, "serve", "--config", str(cfg)], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        # One session first, so one-time allocations are not counted per client.
        warm = await connect(port, "bench")
        await asyncio.sleep(0.5)
        base = rss_kib(proxy.pid)
        print(f"proxy RSS with 1 session: {base} KiB")

        if args.clients:
            conns = []
            for i in range(0, args.clients, 100):
                conns += await asyncio.gather(*(connect(port, "bench") for _ in range(min(100, args.clients - i))))
            await asyncio.sleep(1.0)
            rss = rss_kib(proxy.pid)
            per = (rss - base) * 1024 / args.clients
            print(f"{args.clients} idle clients: RSS {rss} KiB, {per / 1024:.1f} KiB per idle client connection")
            for _, w in conns:
                w.close()

        if args.statements:
            reader, writer = warm
            filler = " AND u.email NOT LIKE '%@test.example' -- exclude test accounts\n"
            t0 = time.time()
            marks = []
            for i in range(args.statements):
                sql = f"SELECT u.id, {i} AS n FROM users u JOIN user_profiles p ON p.user_id = u.id WHERE true\n"
                while len(sql) < 2000:
                    sql += filler
                writer.write(frame(b"Q", sql.encode() + b"\0"))
                await writer.drain()
                await read_until_ready(reader)
                if (i + 1) % (args.statements // 5) == 0:
                    marks.append((i + 1, rss_kib(proxy.pid)))
            dt = time.time() - t0
            for n, rss in marks:
                print(f"after {n} distinct 2 KB statements: RSS {rss} KiB (+{rss - base} KiB)")
            limit = args.cache_bytes if args.cache_bytes is not None else 16 << 20
            print(f"cache bound {limit // 1024} KiB; {args.statements / dt:.0f} statements/s")
    finally:
        proxy.terminate()
        proxy.wait(timeout=5)
        upstream.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=0)
    ap.add_argument("--statements", type=int, default=0)
    ap.add_argument("--cache-bytes", type=int, default=None)
    ap.add_argument("--binary", default=str(ROOT / "target/release/heal7-proxy"))
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
