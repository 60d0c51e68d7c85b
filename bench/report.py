#!/usr/bin/env python3
"""Targets, Markdown tables and the docs/BENCHMARKS.md block for a bench/run results file.

Stdlib only. Used by bench/run; also runnable alone to redo the docs from a JSON file:

    python3 bench/report.py bench/results/latest.json                # print targets
    python3 bench/report.py bench/results/latest.json --docs docs/BENCHMARKS.md --svg docs/benchmarks.svg
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

DOC_INTRO = """# Benchmarks

Side-by-side benchmarks of Crier and peer servers on one machine, produced by
[`bench/run`](../bench/README.md). The plan, the published anchors and the limits of
the benchmark machine are in the performance spec; `bench/README.md` describes the
workloads.

Everything between the `bench:begin` and `bench:end` markers below is rewritten by
`bench/run`; edit only outside them.

"""

KIB = 1024


# ----------------------------------------------------------------------------- lookups

def good_runs(doc, workload=None, server=None):
    for r in doc.get("runs", []):
        if "error" in r:
            continue
        if workload is not None and r.get("workload") != workload:
            continue
        if server is not None and r.get("server") != server:
            continue
        yield r


def find_b1(doc, server, n, payload=100, rate="max"):
    found = None
    for r in good_runs(doc, "B1", server):
        if near(plot.n_of(r), n) and r.get("payload_bytes") == payload and plot.rate_key(r.get("rate")) == plot.rate_key(rate):
            found = r
    return found


def near(n, target):
    """n is target, give or take 1 % (B2 rounds users up to whole groups; joins may fail)."""
    return isinstance(n, (int, float)) and abs(n - target) <= max(6, target * 0.01)


def fmt_n(r):
    """Planned subscribers, with the joined count when it fell short."""
    n, got = plot.n_of(r), r.get("subscribers")
    if isinstance(got, (int, float)) and isinstance(n, (int, float)) and got < n:
        return f"{n:,} ({got:,} joined)"
    return fmt_int(n)


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------- targets

def _target(name, value, threshold, unit, met, detail=""):
    if value is None:
        status = "not measured"
    else:
        status = "met" if met else "missed"
    return {"name": name, "value": value, "threshold": threshold, "unit": unit,
            "status": status, "detail": detail}


def _ratio_target(doc, n, other, factor, unit):
    label = f"B1 crier vs {other}, {n // 1000}k subscribers (rate max, 100 B)"
    if unit == "%":
        name = f"{label}: crier deliveries/s ≥ {factor:g} % of {other}"
        scale = 100.0
        threshold = factor
    else:
        name = f"{label}: crier deliveries/s ≥ {factor:g}× {other}"
        scale = 1.0
        threshold = factor
    c = find_b1(doc, "crier", n)
    o = find_b1(doc, other, n)
    cv = num(c.get("deliveries_per_sec")) if c else None
    ov = num(o.get("deliveries_per_sec")) if o else None
    if cv is None or not ov:
        missing = [s for s, v in (("crier", cv), (other, ov)) if not v]
        return _target(name, None, threshold, unit, False, "no run for " + " and ".join(missing))
    value = cv / ov * scale
    return _target(name, value, threshold, unit, value >= threshold,
                   f"crier {cv:,.0f}/s, {other} {ov:,.0f}/s")


def compute_targets(doc):
    """The performance targets as a list of {name, value, threshold, unit, status, detail}."""
    t = []
    for n in (1000, 10000):
        t.append(_ratio_target(doc, n, "raw-ws", 90, "%"))
    for n in (1000, 10000):
        t.append(_ratio_target(doc, n, "socket.io", 3, "×"))

    # Delivery ratio below saturation: every crier rate-10 B1 run delivers everything.
    runs = [r for r in good_runs(doc, "B1", "crier") if plot.rate_key(r.get("rate")) == "10"
            and num(r.get("delivery_ratio")) is not None]
    name = "B1 crier delivery ratio below saturation (every rate-10 run) = 100 %"
    if runs:
        worst = min(runs, key=lambda r: r["delivery_ratio"])
        value = worst["delivery_ratio"] * 100
        t.append(_target(name, value, 100.0, "%", worst["delivery_ratio"] >= 1.0 - 1e-12,
                         f"lowest: {worst.get('subscribers'):,} subscribers, {worst.get('payload_bytes')} B "
                         f"({len(runs)} runs)"))
    else:
        t.append(_target(name, None, 100.0, "%", False, "no crier rate-10 run"))

    # B2 p99 at 4k VUs.
    name = "B2 crier p99 ≤ 50 ms at 4k VUs"
    b2 = [r for r in good_runs(doc, "B2", "crier")]
    at4k = [r for r in b2 if near(plot.n_of(r), 4000) and num(r.get("p99_ms")) is not None]
    if at4k:
        r = at4k[-1]
        t.append(_target(name, r["p99_ms"], 50.0, "ms", r["p99_ms"] <= 50.0,
                         f"{num(r.get('deliveries_per_sec')) or 0:,.0f} msgs/s delivered"))
    else:
        reached = max((plot.n_of(r) or 0 for r in b2), default=0)
        why = f"ramp ended at {reached:,} VUs" if b2 else "no crier B2 run"
        # A ramp that stopped below 4k because p99 or delivery failed is a miss, not a gap.
        stopped = [r for r in b2 if r.get("stopped_because") in ("p99", "delivery")]
        if stopped and reached < 4000:
            last = stopped[-1]
            t.append(_target(name, num(last.get("p99_ms")), 50.0, "ms", False,
                             f"{why}: stopped because of {last['stopped_because']}"))
        else:
            t.append(_target(name, None, 50.0, "ms", False, why))

    t.append(_b2_capacity_target(doc))
    t.append(_b2_cpu_target(doc))

    # Memory at 10k.
    name = "Memory: crier idle RSS per joined connection ≤ 8 KiB at 10k"
    mem = [r for r in good_runs(doc, "memory", "crier")
           if near(plot.n_of(r), 10000) and num(r.get("idle_rss_per_conn_bytes")) is not None]
    if mem:
        v = mem[-1]["idle_rss_per_conn_bytes"] / KIB
        t.append(_target(name, v, 8.0, "KiB", v <= 8.0,
                         f"RSS {fmt_bytes(mem[-1].get('rss_bytes'))}" if num(mem[-1].get("rss_bytes")) else ""))
    else:
        t.append(_target(name, None, 8.0, "KiB", False, "no crier memory run at 10k"))
    t.extend(_rls_targets(doc))
    return t


def _b2_capacity(doc, server):
    """The most VUs a server's B2 ramp held within its limits (p99, delivery), or None."""
    runs = list(good_runs(doc, "B2", server))
    # To the hundred: B2 rounds users up to whole groups (4,002 for a 4,000 step).
    held = [round((plot.n_of(r) or 0) / 100) * 100 for r in runs
            if not r.get("stopped_because") or r.get("stopped_because") == "max"]
    return (max(held) if held else 0) if runs else None


def _b2_capacity_target(doc):
    name = "B2 capacity: crier's VUs within p99 and delivery ≥ 0.9× raw-ws's"
    c, o = _b2_capacity(doc, "crier"), _b2_capacity(doc, "raw-ws")
    if c is None or not o:
        return _target(name, None, 0.9, "×", False, "no B2 ramp for crier and raw-ws")
    return _target(name, c / o, 0.9, "×", c / o >= 0.9, f"crier {c:,.0f} VUs, raw-ws {o:,.0f} VUs")


def _b2_cpu_target(doc):
    name = "B2 server CPU at 4k VUs: crier ≤ 1.05× raw-ws"
    cpu = {}
    for server in ("crier", "raw-ws"):
        at4k = [r for r in good_runs(doc, "B2", server)
                if near(plot.n_of(r), 4000) and num(r.get("server_cpu_pct")) is not None]
        cpu[server] = at4k[-1]["server_cpu_pct"] if at4k else None
    if not cpu["crier"] or not cpu["raw-ws"]:
        return _target(name, None, 1.05, "×", False, "no B2 run at 4k VUs for crier and raw-ws")
    ratio = cpu["crier"] / cpu["raw-ws"]
    return _target(name, ratio, 1.05, "×", ratio <= 1.05,
                   f"crier {cpu['crier']:.0f} %, raw-ws {cpu['raw-ws']:.0f} %")


def _rls_targets(doc):
    """B3 with RLS `all` (100 distinct claims groups) at 1,000 changes/s, when it ran."""
    runs = [r for r in good_runs(doc, "B3", "crier")
            if (r.get("pgchanges") or {}).get("rls") == "all" and near(num(r.get("rate")) or 0, 1000)]
    if not runs:
        return []
    r = runs[-1]
    detail = f"{r.get('subscribers')} subscribers, {fmt_pct(r.get('delivery_ratio'), 2)} delivered"
    return [_target("B3 RLS all, 1,000 changes/s: p50 commit to receive ≤ 5 ms", r["p50_ms"], 5.0, "ms",
                    r["p50_ms"] <= 5.0, detail),
            _target("B3 RLS all, 1,000 changes/s: p99 commit to receive ≤ 15 ms", r["p99_ms"], 15.0, "ms",
                    r["p99_ms"] <= 15.0, detail)]


# ----------------------------------------------------------------------------- formatting

def fmt_int(v):
    v = num(v)
    return "–" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    v = num(v)
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_pct(v, digits=1):
    v = num(v)
    return "–" if v is None else f"{v * 100:.{digits}f} %"


def fmt_cpu(v):
    v = num(v)
    return "–" if v is None else f"{v:.0f} %"


def fmt_bytes(v):
    v = num(v)
    if v is None:
        return "–"
    if v >= 2 ** 30:
        return f"{v / 2 ** 30:.2f} GiB"
    if v >= 2 ** 20:
        return f"{v / 2 ** 20:.1f} MiB"
    return f"{v / KIB:.1f} KiB"


def fmt_target_value(t):
    v = t["value"]
    if v is None:
        return "–"
    if t["unit"] == "%":
        return f"{v:.1f} %"
    if t["unit"] == "×":
        return f"{v:.2f}×"
    return f"{v:.1f} {t['unit']}"


def fmt_threshold(t):
    if t["unit"] == "%":
        return f"{t['threshold']:g} %"
    if t["unit"] == "×":
        return f"{t['threshold']:g}×"
    return f"{t['threshold']:g} {t['unit']}"


def fmt_duration(s):
    s = num(s)
    if s is None:
        return "–"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def table(header, rows, align=None):
    """A Markdown table; `align` has one letter per column, l or r (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def server_sort_key(s):
    order = plot.SERVER_ORDER
    return (order.index(s) if s in order else len(order), s)


def rate_sort_key(rate):
    k = plot.rate_key(rate)
    if k == "max":
        return (1, 0)
    try:
        return (0, float(k))
    except ValueError:
        return (2, 0)


# ----------------------------------------------------------------------------- markdown

def machine_lines(doc):
    m = doc.get("machine") or {}
    hw = ", ".join(x for x in (
        m.get("cpu_model"),
        f"{m['cores']} cores" if m.get("cores") else None,
        f"{m['mem_bytes'] / 2 ** 30:.1f} GiB RAM" if num(m.get("mem_bytes")) else None,
    ) if x)
    sw = ", ".join(x for x in (
        m.get("os"), f"Linux {m['kernel']}" if m.get("kernel") else None,
        m.get("rustc"), f"Node {m['node']}" if m.get("node") else None,
        m.get("nats_server"),
    ) if x)
    lines = []
    cmd = m.get("command") or "bench/run"
    mode = "quick" if m.get("quick") else "full"
    lines.append(f"- **Command:** `{cmd}` ({mode} run)")
    if m.get("fake"):
        lines.append("- **Synthetic numbers:** this run used `BENCH_FAKE=1` (bench/fake.py); nothing was measured.")
    when = m.get("date") or "?"
    commit = m.get("git_commit") or "?"
    lines.append(f"- **Date:** {when}. **Commit:** `{commit}`")
    if hw:
        lines.append(f"- **Machine:** {hw}")
    if sw:
        lines.append(f"- **Software:** {sw}")
    if m.get("loadavg"):
        lines.append(f"- **Load average at start:** {m['loadavg']} (the machine may be shared)")
    lines.append("- **Pinning:** the server runs on CPU 0 (`taskset -c 0`), `crier bench` on CPU 1 "
                 "(`taskset -c 1`). Every server and every subscriber count gets a fresh server process.")
    timing = doc.get("timing") or {}
    if timing.get("total_s") is not None:
        extra = ""
        if timing.get("benchmark_s") is not None:
            extra = f" (benchmarks {fmt_duration(timing['benchmark_s'])}, build and install {fmt_duration(timing.get('prepare_s'))})"
        lines.append(f"- **Wall time:** {fmt_duration(timing['total_s'])}{extra}")
    plan = doc.get("plan") or {}
    if plan:
        b1 = plan.get("b1") or {}
        b2 = plan.get("b2") or {}
        if b1:
            lines.append(f"- **B1 phases:** {b1.get('warmup')} s warm-up + {b1.get('seconds')} s measured per "
                         f"(payload, rate); payloads {', '.join(str(p) for p in b1.get('payloads', []))} B; "
                         f"rates {', '.join(str(r) for r in b1.get('rates', []))} msgs/s")
        if b2:
            lines.append(f"- **B2 ramp:** {b2.get('start'):,} to {b2.get('max'):,} VUs in steps of {b2.get('step'):,}, "
                         f"{b2.get('warmup')} s warm-up + {b2.get('seconds')} s per step, stop at p99 > "
                         f"{b2.get('p99_limit_ms')} ms or delivery < {b2.get('min_delivery_ratio')}")
        b3 = plan.get("b3") or {}
        if b3:
            db = "a private PostgreSQL (crier-test-postgres)" if b3.get("database") == "private" else "the given PostgreSQL"
            lines.append(f"- **B3 runs:** {b3.get('subscribers')} subscribers, {b3.get('rate')} rows/s, RLS "
                         f"{', '.join(b3.get('rls', []))}; {b3.get('warmup')} s warm-up + {b3.get('seconds')} s "
                         f"measured; {db}, not pinned")
    return lines


def targets_table(targets):
    rows = []
    for t in targets:
        mark = {"met": "✅ met", "missed": "❌ missed"}.get(t["status"], "– not measured")
        rows.append([t["name"], fmt_target_value(t), fmt_threshold(t), mark, t.get("detail") or ""])
    return table(["Target", "Value", "Threshold", "Status", "Detail"], rows, "lrrll")


def b1_table(doc):
    runs = list(good_runs(doc, "B1"))
    if not runs:
        return "_No B1 runs._"
    keys = sorted({(r.get("payload_bytes"), plot.rate_key(r.get("rate")), plot.n_of(r)) for r in runs},
                  key=lambda k: (k[0] or 0, rate_sort_key(k[1]), k[2] or 0))
    rows = []
    for payload, rate, n in keys:
        group = [r for r in runs if (r.get("payload_bytes"), plot.rate_key(r.get("rate")), plot.n_of(r)) == (payload, rate, n)]
        base = next((r for r in group if r.get("server") == "raw-ws"), None)
        bv = num(base.get("deliveries_per_sec")) if base else None
        for r in sorted(group, key=lambda r: server_sort_key(r.get("server", ""))):
            dv = num(r.get("deliveries_per_sec"))
            ratio = f"{dv / bv * 100:.0f} %" if rate == "max" and dv is not None and bv else "–"
            rows.append([f"{payload} B", rate, fmt_n(r), r.get("server"), fmt_int(dv), ratio,
                         fmt_pct(r.get("delivery_ratio"), 2), fmt_ms(r.get("p50_ms")), fmt_ms(r.get("p99_ms")),
                         fmt_ms(r.get("max_ms")), fmt_cpu(r.get("server_cpu_pct"))])
    return table(["Payload", "Rate (msgs/s)", "Subscribers", "Server", "Deliveries/s", "vs raw-ws",
                  "Delivered", "p50 ms", "p99 ms", "max ms", "Server CPU"], rows, "lrrlrrrrrrr")


def ratios_table(doc):
    """Deliveries/s at rate max as a share of raw-ws, server × subscribers, per payload."""
    runs = [r for r in good_runs(doc, "B1") if plot.rate_key(r.get("rate")) == "max"]
    if not runs:
        return "_No rate-max B1 runs._"
    servers = sorted({r.get("server") for r in runs}, key=server_sort_key)
    ns = sorted({plot.n_of(r) for r in runs})
    payloads = sorted({r.get("payload_bytes") for r in runs})
    rows = []
    for payload in payloads:
        for s in servers:
            cells = []
            for n in ns:
                r = find_b1(doc, s, n, payload, "max")
                b = find_b1(doc, "raw-ws", n, payload, "max")
                rv = num(r.get("deliveries_per_sec")) if r else None
                bv = num(b.get("deliveries_per_sec")) if b else None
                cells.append(f"{rv / bv * 100:.0f} %" if rv is not None and bv else "–")
            rows.append([f"{payload} B", s] + cells)
    return table(["Payload", "Server"] + [f"{n:,} subscribers" for n in ns], rows, "ll" + "r" * len(ns))


def memory_table(doc):
    runs = list(good_runs(doc, "memory"))
    if not runs:
        return "_No memory runs._"
    servers = sorted({r.get("server") for r in runs}, key=server_sort_key)
    ns = sorted({plot.n_of(r) for r in runs})
    rows = []
    for s in servers:
        cells = []
        for n in ns:
            r = [x for x in runs if x.get("server") == s and plot.n_of(x) == n]
            v = num(r[-1].get("idle_rss_per_conn_bytes")) if r else None
            cells.append("–" if v is None else f"{v / KIB:.1f} KiB")
        rows.append([s] + cells)
    return table(["Server"] + [f"{n:,} conns" for n in ns], rows)


def b2_table(doc):
    runs = list(good_runs(doc, "B2"))
    if not runs:
        return "_No B2 runs._"
    rows = []
    for r in sorted(runs, key=lambda r: (server_sort_key(r.get("server", "")), plot.n_of(r) or 0)):
        stop = r.get("stopped_because")
        rows.append([r.get("server"), fmt_int(r.get("subscribers")), fmt_int(r.get("deliveries_per_sec")),
                     fmt_ms(r.get("p50_ms")), fmt_ms(r.get("p95_ms")), fmt_ms(r.get("p99_ms")),
                     fmt_pct(r.get("delivery_ratio"), 2), fmt_cpu(r.get("server_cpu_pct")),
                     f"stopped: {stop}" if stop else ""])
    return table(["Server", "VUs", "Msgs/s delivered", "p50 ms", "p95 ms", "p99 ms", "Delivered",
                  "Server CPU", ""], rows, "lrrrrrrrl")


RLS_ORDER = {"off": 0, "all": 1, "per-user": 2}


def b3_table(doc):
    runs = list(good_runs(doc, "B3"))
    if not runs:
        return "_No B3 runs._"
    rows = []
    key = lambda r: (server_sort_key(r.get("server", "")), RLS_ORDER.get((r.get("pgchanges") or {}).get("rls"), 9))
    for r in sorted(runs, key=key):
        pg = r.get("pgchanges") or {}
        rows.append([r.get("server"), pg.get("rls", "–"), fmt_int(r.get("subscribers")), plot.rate_key(r.get("rate")),
                     fmt_int(r.get("deliveries_per_sec")), fmt_pct(r.get("delivery_ratio"), 2),
                     fmt_int(pg.get("missing")), fmt_ms(r.get("p50_ms")), fmt_ms(r.get("p99_ms")),
                     fmt_cpu(r.get("server_cpu_pct")), fmt_cpu(pg.get("pg_cpu_pct"))])
    return table(["Server", "RLS", "Subscribers", "Rows/s", "Deliveries/s", "Delivered", "Missing", "p50 ms",
                  "p99 ms", "Server CPU", "PostgreSQL CPU"], rows, "llrrrrrrrrr")


def b4_table(doc):
    runs = list(good_runs(doc, "B4"))
    if not runs:
        return "_No B4 runs._"
    single = {(r.get("subscribers"), r.get("payload_bytes"), plot.rate_key(r.get("rate"))): r
              for r in runs if r.get("variant") == "single"}
    rows = []
    key = lambda r: (r.get("subscribers") or 0, r.get("payload_bytes") or 0, r.get("variant") != "single")
    for r in sorted(runs, key=key):
        peers = r.get("peer_cpu_pct") or {}
        base = single.get((r.get("subscribers"), r.get("payload_bytes"), plot.rate_key(r.get("rate"))))
        ratio = "–"
        if r.get("variant") == "cluster" and base and num(base.get("deliveries_per_sec")):
            ratio = f"{num(r.get('deliveries_per_sec')) / base['deliveries_per_sec']:.2f}×"
        rows.append([r.get("variant"), fmt_int(r.get("subscribers")), str(r.get("payload_bytes")),
                     fmt_int(r.get("deliveries_per_sec")), ratio, fmt_pct(r.get("delivery_ratio"), 2),
                     fmt_ms(r.get("p99_ms")), fmt_cpu(r.get("server_cpu_pct")), fmt_cpu(peers.get("node-b")),
                     fmt_cpu(peers.get("redis"))])
    return table(["Nodes", "Subscribers", "Bytes", "Deliveries/s", "vs one node", "Delivered", "p99 ms",
                  "Node A CPU", "Node B CPU", "Redis CPU"], rows, "lrrrrrrrrr")


def errors_section(doc):
    errs = doc.get("errors") or []
    if not errs:
        return []
    rows = []
    for e in errs:
        what = e.get("workload", "")
        if e.get("subscribers"):
            what += f" N={e['subscribers']:,}"
        msg = str(e.get("error", "")).splitlines()[0][:200].replace("|", "\\|")
        rows.append([e.get("server", ""), what, msg, f"`{e['log']}`" if e.get("log") else ""])
    return ["### Failures", "",
            "These runs failed; they are missing from the tables above.", "",
            table(["Server", "Run", "Error", "Log"], rows, "llll"), ""]


def render_block(doc, svg_name="benchmarks.svg"):
    """The Markdown that goes between the bench markers."""
    targets = doc.get("targets") or compute_targets(doc)
    out = [BEGIN,
           "<!-- Generated by bench/run (bench/report.py); edits between these markers are overwritten. -->",
           "",
           "## Latest run",
           ""]
    out += machine_lines(doc)
    out += ["",
            f"![B1 fanout: deliveries/s and p99 latency against subscribers, one line per server]({svg_name})",
            "",
            "### Targets",
            "",
            targets_table(targets),
            "",
            "### B1: one-topic fanout",
            "",
            "N subscribers on one topic, one publisher. Deliveries/s = frames received by subscribers per second. "
            "Rate `max` publishes closed-loop as fast as the server delivers (so its latency includes the "
            "queue the loop keeps full); rate 10 is below saturation. Latency is publish to receive. "
            "Server CPU is of one core. \"vs raw-ws\" compares rate-max deliveries/s at the same N and payload.",
            "",
            b1_table(doc),
            "",
            "### B1 deliveries/s relative to raw-ws (rate max)",
            "",
            ratios_table(doc),
            "",
            "### Memory: RSS per idle joined connection",
            "",
            "Server RSS after N subscribers connected and joined the topic, before any message, divided by N.",
            "",
            memory_table(doc),
            "",
            "### B2: Supabase broadcast replica (virtual users)",
            "",
            "Each VU holds one connection, an echo topic of its own and a 6-member group topic, and sends "
            "2 msgs/s to each. The ramp stops when p99 exceeds the limit or delivery drops below the ratio.",
            "",
            b2_table(doc),
            ""]
    if any(good_runs(doc, "B3")):
        out += ["### B3: postgres changes",
                "",
                "Rows inserted into PostgreSQL, delivered by Crier as postgres changes to N subscribers of one "
                "topic, without RLS (`off`), with a policy every row passes (`all`, one claims group per "
                "subscriber) and with each row visible to its owner only (`per-user`). Latency is from the "
                "row's `clock_timestamp()` to receipt. Missing deliveries must be 0.",
                "",
                b3_table(doc),
                ""]
    if any(good_runs(doc, "B4")):
        out += ["### B4: a two-node cluster on one Redis",
                "",
                "B1's fan-out (rate max) on one node, then on two nodes sharing one Redis, with the "
                "subscribers split between the nodes and the publisher on node A; every process on the "
                "server CPU. Node A's CPU is beside node B's and Redis's.",
                "",
                b4_table(doc),
                ""]
    out += errors_section(doc)
    out.append(END)
    return "\n".join(out) + "\n"


def update_docs(path, block):
    """Replace the text between the markers in `path` (created with an intro if missing)."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = DOC_INTRO + BEGIN + "\n" + END + "\n"
    b = text.find(BEGIN)
    e = text.find(END, b + len(BEGIN)) if b >= 0 else -1
    if b < 0 or e < 0:
        new = text.rstrip("\n") + "\n\n" + block
    else:
        new = text[:b] + block.rstrip("\n") + text[e + len(END):]
        if not new.endswith("\n"):
            new += "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def targets_text(targets):
    """Plain-text target summary for the console."""
    lines = []
    w = max((len(t["name"]) for t in targets), default=10)
    for t in targets:
        status = {"met": "MET", "missed": "MISSED"}.get(t["status"], "not measured")
        lines.append(f"  {t['name']:<{w}}  {fmt_target_value(t):>10}  (threshold {fmt_threshold(t)})  {status}"
                     + (f"  [{t['detail']}]" if t.get("detail") else ""))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--docs", help="Markdown file whose bench block to rewrite")
    ap.add_argument("--svg", help="SVG file to write")
    a = ap.parse_args(argv)
    with open(a.results, encoding="utf-8") as f:
        doc = json.load(f)
    doc["targets"] = compute_targets(doc)
    print(targets_text(doc["targets"]))
    if a.svg:
        plot.write_svg(doc, a.svg)
    if a.docs:
        svg_name = os.path.relpath(a.svg, os.path.dirname(os.path.abspath(a.docs))) if a.svg else "benchmarks.svg"
        update_docs(a.docs, render_block(doc, svg_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
