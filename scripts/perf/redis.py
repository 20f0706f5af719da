#!/usr/bin/env python3
"""heal7-proxy's Redis side vs a direct connection vs twemproxy (nutcracker),
with redis-benchmark GET/SET, pipelined (-P 16) and not, 1 and 50 clients,
in one interleaved run (the order of the three targets rotates each
repetition). Prints requests/s (median of the repetitions), each proxy's
ratio to direct, and in how many repetitions heal7-proxy beat twemproxy.

Keys: redis-benchmark's `key:__rand_int__`; heal7-proxy rewrites `key:` on
db 0 to `bench:key:` on db 1, so every request goes through the rewrite and
the database move. twemproxy forwards unchanged.

Needs redis-server, redis-benchmark (redis-tools) and nutcracker on PATH and
a release build (`cargo build --release`; --no-build skips the check).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_all(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_port(port, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not answer PING on port {port}")


def bench(port, test, clients, pipeline, requests, extra_args=()):
    """requests/s of one redis-benchmark run; `extra_args` go before the
    test's own (redis_tls.py's `--tls ...`)."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), *extra_args, "-t", test,
         "-n", str(requests), "-c", str(clients), "-P", str(pipeline),
         "-r", "100000", "--csv"],
        capture_output=True, text=True, timeout=600,
    ).stdout
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0].upper() == test.upper():
            return float(cells[1])
    sys.exit(f"redis-benchmark on port {port} gave no {test} figure:\n{out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100_000, help="per redis-benchmark run (pipelined rows x4)")
    ap.add_argument("--workers", default="1", help="HEAL7_WORKER_THREADS for heal7-proxy (twemproxy has one thread)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-multiplex-too", action="store_true",
                    help="also run a second heal7-proxy with redis.multiplex: false (a column of its own)")
    ap.add_argument("--binary", help="heal7-proxy binary (default target/release/heal7-proxy)")
    args = ap.parse_args()
    for tool in ["redis-server", "redis-benchmark", "nutcracker"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install redis-server redis-tools nutcracker)")
    binary = Path(args.binary) if args.binary else ROOT / "target/release/heal7-proxy"
    if not args.no_build and not args.binary:
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    if not binary.exists():
        sys.exit(f"{binary} missing: cargo build --release")

    tmp = Path(tempfile.mkdtemp(prefix="heal7-redis-bench-"))
    procs = []
    try:
        rport, hport, tport, pgport = free_port(), free_port(), free_port(), free_port()
        nport, npgport = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(rport, "redis-server")
        env = dict(os.environ, HEAL7_WORKER_THREADS=args.workers, RUST_LOG="heal7_proxy=warn")
        instances = [("heal7", pgport, hport, "true")]
        if args.no_multiplex_too:
            instances.append(("heal7-nomux", npgport, nport, "false"))
        for label, pg, port, multiplex in instances:
            config = tmp / f"{label}.yaml"
            config.write_text(
                f"proxy: {{listen: 127.0.0.1:{pg}}}\n"
                "databases: {heal7: {}}\n"
                f"redis:\n  listen: 127.0.0.1:{port}\n"
                f"  upstream: {{host: 127.0.0.1, port: {rport}}}\n"
                f"  multiplex: {multiplex}\n"
                "  namespaces:\n    - {from: \"key:\", from_db: 0, to: \"bench:key:\", to_db: 1}\n")
            procs.append(subprocess.Popen([str(binary), "serve", "--config", str(config)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(tmp / f"{label}.log", "w")))
            wait_port(port, label)
        nut = tmp / "nutcracker.yml"
        nut.write_text(
            f"bench:\n  listen: 127.0.0.1:{tport}\n  hash: fnv1a_64\n  distribution: ketama\n"
            f"  redis: true\n  auto_eject_hosts: false\n  servers:\n    - 127.0.0.1:{rport}:1\n")
        procs.append(subprocess.Popen(["nutcracker", "-c", str(nut), "-o", str(tmp / "nutcracker.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(tport, "nutcracker")

        targets = [("direct", rport), ("heal7-proxy", hport), ("twemproxy", tport)]
        if args.no_multiplex_too:
            targets.append(("heal7 no-mux", nport))
        rows = [(t, c, p) for t in ["set", "get"] for c in [1, 50] for p in [1, 16]]
        results = {(row, name): [] for row in rows for name, _ in targets}
        for rep in range(args.reps):
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for row in rows:
                test, clients, pipeline = row
                n = args.requests * (4 if pipeline > 1 else 1)
                for name, port in order:
                    results[(row, name)].append(bench(port, test, clients, pipeline, n))
            print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)

        print(f"redis-benchmark, median of {args.reps} interleaved repetitions; heal7-proxy HEAL7_WORKER_THREADS={args.workers}")
        print()
        extra = " heal7 multiplex:false req/s | ratio |" if args.no_multiplex_too else ""
        # Paired: each repetition ran every target back to back, so a
        # repetition's own comparison is spared the drift between repetitions.
        print("| test | clients | pipeline | direct req/s | heal7-proxy req/s | ratio | twemproxy req/s | ratio "
              "| reps heal7-proxy ahead |" + extra)
        print("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if extra else ""))
        for row in rows:
            test, clients, pipeline = row
            d = statistics.median(results[(row, "direct")])
            h = statistics.median(results[(row, "heal7-proxy")])
            t = statistics.median(results[(row, "twemproxy")])
            ahead = sum(a > b for a, b in zip(results[(row, "heal7-proxy")], results[(row, "twemproxy")]))
            cells = (f"| {test.upper()} | {clients} | {pipeline} | {d:,.0f} | {h:,.0f} | {h / d:.2f} | {t:,.0f} "
                     f"| {t / d:.2f} | {ahead} of {args.reps} |")
            if extra:
                x = statistics.median(results[(row, "heal7 no-mux")])
                cells += f" {x:,.0f} | {x / d:.2f} |"
            print(cells)
        # The rewrite really happened: the benchmark's keys are on db 1.
        moved = subprocess.run(["redis-cli", "-p", str(rport), "-n", "1", "DBSIZE"],
                               capture_output=True, text=True).stdout.strip()
        print()
        print(f"keys on db 1 after the run (where heal7-proxy sent `key:`): {moved}")
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
