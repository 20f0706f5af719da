#!/usr/bin/env python3
"""What TLS costs on heal7-proxy's Redis side: redis-benchmark GET/SET
(pipelined -P 16 and not, 1 and 50 clients) against one redis-server that
listens both in clear and on a TLS port, directly and through two
heal7-proxy processes, one plain on both sides and one with TLS on both
sides (`redis.tls: require`, `redis.upstream.tls: verify-full`), in one
interleaved run (the order of the four targets rotates each repetition).
Prints requests/s (median) and each proxy's ratio to the direct connection
of the same kind, so the two ratios say whether TLS makes the proxy's share
of the cost larger.

Certificates: a throwaway CA and a P-256 server certificate for 127.0.0.1
made with the openssl command. Keys `key:` on db 0 are rewritten to
`bench:key:` on db 1 by both proxies, as in redis.py.

Needs redis-server, redis-benchmark and redis-cli (redis-tools), openssl,
and a release build (`cargo build --release`; --no-build skips it).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis import bench, free_port, stop_all  # noqa: E402


def make_certificates(tmp):
    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=heal7 bench CA", "-days", "2")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


def tls_args(tmp, tls):
    return ["--tls", "--cacert", str(tmp / "ca.crt")] if tls else []


def wait_ready(port, tls, tmp, what, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *tls_args(tmp, tls), "PING"],
                             capture_output=True, text=True).stdout
        if out.strip() == "PONG":
            return
        time.sleep(0.1)
    sys.exit(f"{what} did not answer PING on port {port}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--requests", type=int, default=50_000, help="per redis-benchmark run (pipelined rows x4)")
    ap.add_argument("--workers", default="1", help="HEAL7_WORKER_THREADS for heal7-proxy")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", help="heal7-proxy binary (default target/release/heal7-proxy)")
    args = ap.parse_args()
    for tool in ["redis-server", "redis-benchmark", "redis-cli", "openssl"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install redis-server redis-tools openssl)")
    binary = Path(args.binary) if args.binary else ROOT / "target/release/heal7-proxy"
    if not args.no_build and not args.binary:
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    if not binary.exists():
        sys.exit(f"{binary} missing: cargo build --release")

    tmp = Path(tempfile.mkdtemp(prefix="heal7-redis-tls-bench-"))
    procs = []
    try:
        make_certificates(tmp)
        rport, rtls = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--tls-port", str(rtls), "--bind", "127.0.0.1",
             "--tls-cert-file", str(tmp / "server.crt"), "--tls-key-file", str(tmp / "server.key"),
             "--tls-ca-cert-file", str(tmp / "ca.crt"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_ready(rport, False, tmp, "redis-server")
        wait_ready(rtls, True, tmp, "redis-server (TLS)")

        env = dict(os.environ, HEAL7_WORKER_THREADS=args.workers, RUST_LOG="heal7_proxy=warn")

        def proxy(name, tls):
            pgport, hport = free_port(), free_port()
            if tls:
                upstream = (f"{{host: 127.0.0.1, port: {rtls}, tls: {{mode: verify-full, "
                            f"ca_file: {tmp / 'ca.crt'}}}}}")
                listener = f"  tls: {{mode: require, cert_file: {tmp / 'server.crt'}, key_file: {tmp / 'server.key'}}}\n"
            else:
                upstream, listener = f"{{host: 127.0.0.1, port: {rport}}}", ""
            config = tmp / f"{name}.yaml"
            config.write_text(
                f"proxy: {{listen: 127.0.0.1:{pgport}}}\n"
                "databases: {heal7: {}}\n"
                f"redis:\n  listen: 127.0.0.1:{hport}\n  upstream: {upstream}\n{listener}"
                "  namespaces:\n    - {from: \"key:\", from_db: 0, to: \"bench:key:\", to_db: 1}\n")
            procs.append(subprocess.Popen([str(binary), "serve", "--config", str(config)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w")))
            wait_ready(hport, tls, tmp, f"heal7-proxy ({name})")
            return hport

        targets = [
            ("direct", rport, False),
            ("direct TLS", rtls, True),
            ("heal7-proxy", proxy("plain", False), False),
            ("heal7-proxy TLS", proxy("tls", True), True),
        ]
        rows = [(t, c, p) for t in ["set", "get"] for c in [1, 50] for p in [1, 16]]
        results = {(row, name): [] for row in rows for name, _, _ in targets}
        for rep in range(args.reps):
            k = rep % len(targets)
            order = targets[k:] + targets[:k]
            for row in rows:
                test, clients, pipeline = row
                n = args.requests * (4 if pipeline > 1 else 1)
                for name, port, tls in order:
                    results[(row, name)].append(bench(port, test, clients, pipeline, n, tls_args(tmp, tls)))
            print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)

        print(f"redis-benchmark, median of {args.reps} interleaved repetitions; heal7-proxy HEAL7_WORKER_THREADS={args.workers}")
        print()
        print("| test | clients | pipeline | direct | heal7-proxy | ratio | direct TLS | heal7-proxy TLS | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            test, clients, pipeline = row
            d, h, dt, ht = (statistics.median(results[(row, n)])
                            for n in ["direct", "heal7-proxy", "direct TLS", "heal7-proxy TLS"])
            print(f"| {test.upper()} | {clients} | {pipeline} | {d:,.0f} | {h:,.0f} | {h / d:.2f} "
                  f"| {dt:,.0f} | {ht:,.0f} | {ht / dt:.2f} |")
        moved = subprocess.run(["redis-cli", "-p", str(rport), "-n", "1", "DBSIZE"],
                               capture_output=True, text=True).stdout.strip()
        print()
        print(f"keys on db 1 after the run (where both proxies sent `key:`): {moved}")
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
