#!/usr/bin/env python3
"""Instructions each proxy executes per relayed statement, under callgrind.

Wall-clock figures on a shared 2-core machine swing by 20% from one run to
the next; instruction counts do not (the same binary and workload give the
same count within a fraction of a percent), so this is the figure to compare
before and after a change to the hot path.

For each target (heal7-proxy, the variants given, PgBouncer when installed)
and each workload, the proxy runs under `valgrind --tool=callgrind` twice:
once relaying N1 pgbench statements from one client, once N2. The
difference of the two totals divided by N2 - N1 is what one more statement
costs: start-up, config loading and connection set-up cancel out.

The proxy gets pgbench's bare-name script (it qualifies every statement: the
rewrite cache is part of the measurement); PgBouncer gets the qualified one.
Needs valgrind (Debian's package). Starts a throwaway PostgreSQL unless
PGHOST/PGPORT name one (see overhead.py).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (  # noqa: E402
    ROOT,
    Throwaway,
    as_postgres,
    find_pgbouncer,
    free_port,
    prepare_tables,
    psql,
    write_pgbouncer_config,
    wait_port,
    write_proxy_config,
)

WORKLOADS = {
    "select-simple": ["-M", "simple"],
    "select-extended": ["-M", "extended"],
    "select-prepared": ["-M", "prepared"],
}


def callgrind(cmd, out, as_user=None):
    full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd]
    return subprocess.Popen(as_postgres(full) if as_user else full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def total_instructions(path):
    for line in Path(path).read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def stop(proc, out):
    # SIGINT to valgrind itself (under runuser, `proc` is runuser): it
    # writes its output as the program exits.
    subprocess.run(["pkill", "-INT", "-f", f"callgrind-out-file={out}"])
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=10000)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--database", default="heal7_bench")
    ap.add_argument("--binary", default=str(ROOT / "target/release/heal7-proxy"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument(
        "--proxy-variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE",
        help="also measure heal7-proxy with this environment, e.g. ct:HEAL7_WORKER_THREADS=1",
    )
    ap.add_argument(
        "--reps",
        type=int,
        default=1,
        help="measure each target this many times and print the minimum and median: "
        "tokio's timer wheel does more or less work per park depending on when the "
        "next timer is due, which moves one run of the same binary by up to ~5%%",
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the callgrind profiles (their folder is printed) for callgrind_annotate",
    )
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    work = Path(tempfile.mkdtemp(prefix="heal7-instr."))
    os.chmod(work, 0o755)
    server = None
    try:
        if os.environ.get("PGPORT"):
            port, user, db = int(os.environ["PGPORT"]), os.environ.get("PGUSER", "postgres"), args.database
        else:
            server = Throwaway(work)
            port, user, db = server.port, "postgres", args.database
            psql(port, "postgres", f"CREATE DATABASE {db}", user)
        prepare_tables(port, db, user, args.scale)

        targets = [("heal7-proxy", {})]
        for variant in args.proxy_variant:
            vname, _, assignment = variant.partition(":")
            var, _, value = assignment.partition("=")
            targets.append((f"proxy-{vname}", {var: value}))
        bouncer = find_pgbouncer()
        if bouncer:
            targets.append(("pgbouncer", None))
        else:
            print("pgbouncer not installed: measuring heal7-proxy only")

        print(f"# {time.strftime('%Y-%m-%d %H:%M')}: instructions per statement, 1 client, ({args.n2} - {args.n1}) statements")
        if args.reps > 1:
            print(f"{'workload':<16} {'target':<14} {'instr/stmt':>10} {'median':>8}  runs")
        else:
            print(f"{'workload':<16} {'target':<14} {'instr/stmt':>10}")
        for workload in args.workloads.split(","):
            flags = WORKLOADS[workload]
            for name, env in targets:
                runs = []
                for rep in range(args.reps):
                    totals = []
                    for n in (args.n1, args.n2):
                        listen = free_port()
                        out = work / f"cg.{name}.{workload}.{n}" if rep == 0 else work / f"cg.{name}.{workload}.{n}.rep{rep}"
                        if env is None:
                            ini = write_pgbouncer_config(work / f"bouncer-{workload}-{n}-{rep}", listen, port, db, user)
                            # PgBouncer runs as postgres: it writes in its own folder.
                            out = ini.parent / "callgrind.out"
                            proc = callgrind([bouncer, str(ini)], out, as_user="postgres")
                        else:
                            cfg = write_proxy_config(work / f"{name}-{workload}-{n}-{rep}.yaml", listen, port, db)
                            os.environ.update(env)
                            proc = callgrind([args.binary, "serve", "--config", str(cfg)], out)
                            for var in env:
                                del os.environ[var]
                        try:
                            wait_port(listen, seconds=120)  # valgrind starts slowly
                            run_pgbench_count(listen, db, user, flags, n, args.scale, work, bare=env is not None)
                        finally:
                            stop(proc, out)
                        totals.append(total_instructions(out))
                    runs.append((totals[1] - totals[0]) / (args.n2 - args.n1))
                if args.reps > 1:
                    listed = " ".join(f"{r:.0f}" for r in runs)
                    print(f"{workload:<16} {name:<14} {min(runs):>10.0f} {statistics.median(runs):>8.0f}  {listed}", flush=True)
                else:
                    print(f"{workload:<16} {name:<14} {runs[0]:>10.0f}", flush=True)
    finally:
        if server:
            server.stop()
        if args.keep:
            print(f"profiles kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_pgbench_count(port, db, user, flags, count, scale, work, bare):
    """pgbench select-only, one client, exactly `count` statements."""
    script = "\\set aid random(1, 100000 * :scale)\nSELECT abalance FROM bench.pgbench_accounts WHERE aid = :aid;\n"
    if bare:
        script = script.replace("bench.pgbench_", "pgbench_")
    path = work / f"select{'-bare' if bare else ''}.sql"
    path.write_text(script)
    cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-c", "1", "-t", str(count)]
    cmd += flags + ["-s", str(scale), "-f", str(path), db]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed ({' '.join(cmd)}):\n{out.stdout}\n{out.stderr}")


if __name__ == "__main__":
    sys.exit(main())
