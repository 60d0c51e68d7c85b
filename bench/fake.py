#!/usr/bin/env python3
"""Stand-ins for the servers and for `crier bench`, used by `BENCH_FAKE=1 bench/run`.

They let the orchestrator, the report and the plot be exercised in seconds without building
or running anything real (the self-test does this). The numbers are synthetic: a fixed model
per server, with no relation to any measurement.

    fake.py server --kind crier --port 4700   # listens, prints the ready line, waits for SIGTERM
    fake.py bench fanout ... | vus ... | idle ... | pgchanges ...   # same flags as `crier bench`, writes --json

Fault injection through BENCH_FAKE_FAIL, a comma-separated list of `what:server`:
    start:S   the server exits before it is ready
    crash:S   the server exits half a second after it is ready
    bench:S   the bench exits with status 1 without writing results
    hang:S    the bench never finishes (bench/run must time it out)
"""

import argparse
import json
import os
import signal
import socket
import sys
import time

# deliveries/s at 1k subscribers (rate max, 100 B), decay per extra 1k, RSS KiB per conn, p99 ms base
MODEL = {
    "crier": (330_000, 0.012, 7.5, 3.0),
    "raw-ws": (380_000, 0.010, 4.5, 2.5),
    "ws": (120_000, 0.020, 14.0, 9.0),
    "socket.io": (60_000, 0.025, 42.0, 20.0),
    "nats": (200_000, 0.015, 22.0, 5.0),
}


def faults():
    out = set()
    for item in os.environ.get("BENCH_FAKE_FAIL", "").split(","):
        if ":" in item:
            what, server = item.split(":", 1)
            out.add((what.strip(), server.strip()))
    return out


def serve(a):
    if ("start", a.kind) in faults():
        print(f"fake {a.kind}: refusing to start (BENCH_FAKE_FAIL)", flush=True)
        return 1
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    sock.listen(16)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if a.kind != "nats":  # nats readiness is the open port, like the real peer
        print(f"fake {a.kind} listening on 127.0.0.1:{a.port}", flush=True)
    if ("crash", a.kind) in faults():
        def crash(*_):
            print(f"fake {a.kind}: crashing (BENCH_FAKE_FAIL)", flush=True)
            os._exit(3)
        signal.signal(signal.SIGALRM, crash)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
    while not stop:
        signal.pause()
    sock.close()
    return 0


def model(server):
    return MODEL.get(server, (100_000, 0.02, 20.0, 10.0))


def base_run(a, workload, n):
    return {"workload": workload, "server": a.server, "subscribers": n, "rss_bytes": None,
            "idle_rss_per_conn_bytes": None, "server_cpu_pct": None, "tool_cpu_pct": None,
            "connect_join_per_sec": 9000.0, "failed_joins": 0, "seconds": getattr(a, "seconds", 0)}


def fanout_runs(a):
    peak, decay, kib, p99 = model(a.server)
    n = a.subscribers
    k = n / 1000
    rss = int(n * kib * 1024 + 8 * 2 ** 20)
    runs = []
    mem = base_run(a, "memory", n)
    mem.update(rss_bytes=rss, idle_rss_per_conn_bytes=rss / n, rate=None, payload_bytes=None, seconds=a.settle)
    runs.append(mem)
    for payload in [int(p) for p in a.payload_bytes.split(",")]:
        size = 1.0 if payload <= 100 else 0.7
        for rate in a.rates.split(","):
            r = base_run(a, "B1", n)
            sat = peak * size / (1 + decay * (k - 1))
            if rate == "max":
                dps, lat, cpu = sat, p99 * (1 + k / 4), 99.0
            else:
                dps = min(float(rate) * n, sat)
                lat = p99 * (0.2 + k / 20)
                cpu = min(99.0, 100 * dps / sat)
            if a.also_url:  # a cluster: the work is shared, a little is added
                dps, cpu = dps * 0.9, cpu / 2
            r.update(rate="max" if rate == "max" else int(rate), payload_bytes=payload,
                     publishes_per_sec=dps / n, deliveries_per_sec=dps, delivery_ratio=1.0,
                     p50_ms=lat / 4, p95_ms=lat / 1.5, p99_ms=lat, max_ms=lat * 1.6,
                     rss_bytes=int(rss * 1.1), server_cpu_pct=cpu, tool_cpu_pct=70.0)
            if a.peer_pid:
                r["peer_cpu_pct"] = {peer.split("=")[0]: (2.0 if peer.startswith("redis") else cpu)
                                     for peer in a.peer_pid}
            runs.append(r)
    return runs


def vus_runs(a):
    peak, decay, _, p99 = model(a.server)
    runs = []
    v = a.start
    while v <= a.max:
        r = base_run(a, "B2", -(-v // 6) * 6)  # like crier bench: whole 6-member groups
        offered = v * 2 * 7.0  # 2 msgs/s to the echo topic (1 delivery) and to the group (6)
        cap = peak / 2.5
        util = offered / cap
        lat = p99 * (1 + 10 * util ** 4) if util < 1 else 1000.0 * util
        ratio = 1.0 if util < 1 else 1 / util
        r.update(rate=2, payload_bytes=a.payload_bytes, publishes_per_sec=v * 4.0,
                 deliveries_per_sec=offered * ratio, delivery_ratio=ratio,
                 p50_ms=lat / 5, p95_ms=lat / 2, p99_ms=lat, max_ms=lat * 2,
                 server_cpu_pct=min(99.0, util * 100), tool_cpu_pct=60.0, stopped_because=None)
        runs.append(r)
        if lat > a.p99_limit_ms:
            r["stopped_because"] = "p99"
            break
        if ratio < a.min_delivery_ratio:
            r["stopped_because"] = "delivery"
            break
        if v + a.step > a.max:
            r["stopped_because"] = "max"
        v += a.step
    return runs


def pgchanges_runs(a):
    """One B3 run: every delivery arrives; RLS costs latency, per-user divides the deliveries."""
    users = a.subscribers
    per_row = 1 if a.rls == "per-user" else a.subscribers
    rate = a.rate or 6000
    p50, p99 = (0.6, 2.8) if a.rls == "off" else (20.0, 32.0)
    r = base_run(a, "B3", a.subscribers)
    rows = int(rate * a.seconds)
    r.update(rate="max" if a.rate == 0 else a.rate, payload_bytes=64, publishes_per_sec=float(rate),
             deliveries_per_sec=float(rate * per_row), delivery_ratio=1.0, p50_ms=p50, p95_ms=p99 * 0.8,
             p99_ms=p99, max_ms=p99 * 2, server_cpu_pct=35.0, tool_cpu_pct=20.0, lost_connections=0,
             pgchanges={"subscribers": a.subscribers, "rls": a.rls, "users": users, "rate": a.rate,
                        "rows": rows, "expected": rows * per_row, "received": rows * per_row, "missing": 0,
                        "duplicates": 0, "stale": 0, "unauthorized": 0, "p50_ms": p50, "p99_ms": p99,
                        "pg_cpu_pct": 70.0 if a.rls == "off" else 110.0})
    return [r]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def bench(a):
    f = faults()
    if ("hang", a.server) in f:
        while True:
            time.sleep(3600)
    if ("crash", a.server) in f and a.server_pid:
        # Like a real bench, notice the server going away and fail.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and alive(a.server_pid):
            time.sleep(0.05)
        print(f"fake bench: server {a.server_pid} went away", file=sys.stderr)
        return 1
    if ("bench", a.server) in f:
        print(f"fake bench: failing for {a.server} (BENCH_FAKE_FAIL)", file=sys.stderr)
        return 1
    if a.cmd == "pgchanges" and a.setup_only:
        print(f"fake setup: table public.bench, rls {a.rls}")
        return 0
    if a.cmd == "fanout":
        runs = fanout_runs(a)
    elif a.cmd == "pgchanges":
        runs = pgchanges_runs(a)
    elif a.cmd == "vus":
        runs = vus_runs(a)
    else:
        a.payload_bytes, a.rates = "100", ""
        runs = fanout_runs(a)[:1]
    print(f"fake bench {a.cmd} {a.server}: {len(runs)} runs")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump({"runs": runs}, fh)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--kind", required=True)
    s.add_argument("--port", type=int, required=True)
    for flag in ("--database-url", "--slot", "--cdc-resume-grace",  # crier serve's, for B3 and B4; ignored
                 "--redis-url", "--node-name", "--bind", "--save", "--appendonly"):
        s.add_argument(flag)

    b = sub.add_parser("bench")
    bsub = b.add_subparsers(dest="cmd", required=True)
    for name in ("fanout", "vus", "idle"):
        p = bsub.add_parser(name)
        p.add_argument("--server", required=True, choices=["crier", "raw-ws", "ws", "socket.io", "nats"])
        p.add_argument("--url", required=True)
        p.add_argument("--jwt-secret")
        p.add_argument("--vsn", choices=["1", "2"])
        p.add_argument("--server-pid", type=int)
        p.add_argument("--json")
        p.add_argument("--also-url", action="append")
        p.add_argument("--peer-pid", action="append")
        if name != "idle":
            p.add_argument("--seconds", type=float, default=5)
            p.add_argument("--warmup", type=float, default=2)
    f = bsub.choices["fanout"]
    f.add_argument("--subscribers", type=int, required=True)
    f.add_argument("--payload-bytes", default="100")
    f.add_argument("--rates", default="10,max")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(settle=2)
    v = bsub.choices["vus"]
    v.add_argument("--start", type=int, default=1000)
    v.add_argument("--step", type=int, default=1000)
    v.add_argument("--max", type=int, default=16000)
    v.add_argument("--p99-limit-ms", type=float, default=213)
    v.add_argument("--min-delivery-ratio", type=float, default=0.999)
    v.add_argument("--payload-bytes", type=int, default=100)
    i = bsub.choices["idle"]
    i.add_argument("--connections", type=int, required=True, dest="subscribers")
    i.add_argument("--settle", type=float, default=2)

    g = bsub.add_parser("pgchanges")  # B3: crier only, so no --server
    g.set_defaults(server="crier")
    g.add_argument("--url")
    g.add_argument("--jwt-secret")
    g.add_argument("--server-pid", type=int)
    g.add_argument("--pg-pid", type=int)
    g.add_argument("--json")
    g.add_argument("--database-url", required=True)
    g.add_argument("--rls", choices=["off", "all", "per-user"], default="off")
    g.add_argument("--subscribers", type=int, default=100)
    g.add_argument("--rate", type=int, default=1000)
    g.add_argument("--seconds", type=float, default=10)
    g.add_argument("--warmup", type=float, default=2)
    g.add_argument("--drain", type=float, default=10)
    g.add_argument("--setup-only", action="store_true")
    g.add_argument("--no-setup", action="store_true")
    g.add_argument("--no-progress", action="store_true")

    a = ap.parse_args(argv)
    if a.mode == "server":
        return serve(a)
    return bench(a)


if __name__ == "__main__":
    sys.exit(main())
