#!/usr/bin/env python3
"""SVG plot of the B1 fanout results: deliveries/s and p99 latency against subscribers.

Stdlib only. Used by bench/run; also runnable alone:

    python3 bench/plot.py bench/results/latest.json docs/benchmarks.svg
"""

import math
import sys
from xml.sax.saxutils import escape

SERVER_ORDER = ["crier", "raw-ws", "ws", "socket.io", "nats"]
COLORS = {
    "crier": "#d62728",
    "raw-ws": "#1f77b4",
    "ws": "#2ca02c",
    "socket.io": "#9467bd",
    "nats": "#ff7f0e",
}
FALLBACK_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"]
MARKERS = {"crier": "circle", "raw-ws": "square", "ws": "triangle", "socket.io": "diamond", "nats": "cross"}

WIDTH, HEIGHT = 1000, 470
PANEL_TOP, PANEL_BOTTOM = 92, 392
PANELS_X = [(82, 472), (582, 972)]
FONT = "font-family=\"Helvetica, Arial, sans-serif\""


def rate_key(rate):
    """A rate as a comparable string: "max", or the number without a trailing .0 ("10")."""
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        return f"{rate:g}"
    s = str(rate).strip()
    try:
        return f"{float(s):g}"
    except ValueError:
        return s


def n_of(r):
    """A run's subscriber count as planned by bench/run (the joined count may fall a little short,
    and B2 rounds users up to whole 6-member groups), else as reported."""
    n = r.get("planned_subscribers")
    return n if isinstance(n, (int, float)) and not isinstance(n, bool) else r.get("subscribers")


def servers_in(runs):
    names = {r.get("server") for r in runs if r.get("server")}
    ordered = [s for s in SERVER_ORDER if s in names]
    return ordered + sorted(names - set(ordered))


def b1_series(doc, metric, payload=100, rate="max", positive=True):
    """{server: [(subscribers, value), ...]} for B1 runs at (payload, rate), sorted by N.

    Runs without a numeric value for `metric` are left out, and so are zeros when `positive`
    (a log axis cannot show them)."""
    runs = [r for r in doc.get("runs", []) if r.get("workload") == "B1" and "error" not in r]
    out = {}
    for server in servers_in(runs):
        points = {}
        for r in runs:
            if r.get("server") != server or r.get("payload_bytes") != payload:
                continue
            if rate_key(r.get("rate")) != rate_key(rate):
                continue
            v = r.get(metric)
            n = n_of(r)
            if isinstance(v, (int, float)) and isinstance(n, (int, float)) and (v > 0 or (not positive and v == 0)):
                points[n] = v
        if points:
            out[server] = sorted(points.items())
    return out


def color_of(server, index):
    return COLORS.get(server) or FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def nice_step(span, target_ticks=5):
    raw = span / max(target_ticks, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def linear_ticks(vmax):
    if vmax <= 0:
        vmax = 1
    step = nice_step(vmax)
    top = math.ceil(vmax / step) * step
    ticks = []
    v = 0.0
    while v <= top + step / 1e6:
        ticks.append(v)
        v += step
    return top, ticks


def short_number(v):
    if v == 0:
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return s + suffix
    return f"{v:g}"


def log_ticks(vmin, vmax):
    lo = math.floor(math.log10(vmin))
    hi = math.ceil(math.log10(vmax))
    if hi == lo:
        hi = lo + 1
    major = [10.0 ** e for e in range(lo, hi + 1)]
    minor = [m * 10.0 ** e for e in range(lo, hi) for m in (2, 5)]
    return 10.0 ** lo, 10.0 ** hi, major, minor


def ms_label(v):
    if v >= 1:
        return f"{v:,.0f}"
    return f"{v:g}"


def marker(kind, x, y, color):
    r = 4.5
    if kind == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{color}"/>'
    if kind == "triangle":
        pts = f"{x:.1f},{y - r - 1:.1f} {x - r - 0.5:.1f},{y + r - 0.5:.1f} {x + r + 0.5:.1f},{y + r - 0.5:.1f}"
        return f'<polygon points="{pts}" fill="{color}"/>'
    if kind == "diamond":
        pts = f"{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{color}"/>'
    if kind == "cross":
        return (f'<path d="M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},{y + r:.1f}'
                f'L{x + r:.1f},{y - r:.1f}" stroke="{color}" stroke-width="2.5" fill="none"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{color}"/>'


def panel(out, x0, x1, series, order, title, ylabel, log_y, xmax):
    y0, y1 = PANEL_BOTTOM, PANEL_TOP
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 - 10}" text-anchor="middle" font-size="14" '
               f'font-weight="bold" {FONT}>{escape(title)}</text>')
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="#ffffff" stroke="#444" stroke-width="1"/>')

    values = [v for pts in series.values() for _, v in pts]

    def sx(n):
        return x0 + (x1 - x0) * n / xmax

    # X axis: subscribers.
    _, xticks = linear_ticks(xmax)
    for t in xticks:
        if t > xmax + 1e-9:
            continue
        px = sx(t)
        out.append(f'<line x1="{px:.1f}" y1="{y1}" x2="{px:.1f}" y2="{y0}" stroke="#e6e6e6" stroke-width="1"/>')
        out.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 5}" stroke="#444"/>')
        out.append(f'<text x="{px:.1f}" y="{y0 + 19}" text-anchor="middle" font-size="12" {FONT}>{short_number(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 38}" text-anchor="middle" font-size="12" {FONT}>subscribers (one topic)</text>')

    # Y axis.
    if log_y:
        if values:
            lo, hi, major, minor = log_ticks(min(values), max(values))
        else:
            lo, hi, major, minor = 0.1, 1000.0, [0.1, 1, 10, 100, 1000], []
        llo, lhi = math.log10(lo), math.log10(hi)

        def sy(v):
            return y0 - (y0 - y1) * (math.log10(v) - llo) / (lhi - llo)

        for t in minor:
            out.append(f'<line x1="{x0}" y1="{sy(t):.1f}" x2="{x1}" y2="{sy(t):.1f}" stroke="#f0f0f0" stroke-width="1"/>')
        for t in major:
            py = sy(t)
            out.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x1}" y2="{py:.1f}" stroke="#dcdcdc" stroke-width="1"/>')
            out.append(f'<line x1="{x0 - 5}" y1="{py:.1f}" x2="{x0}" y2="{py:.1f}" stroke="#444"/>')
            out.append(f'<text x="{x0 - 8}" y="{py + 4:.1f}" text-anchor="end" font-size="12" {FONT}>{ms_label(t)}</text>')
    else:
        top, yticks = linear_ticks(max(values) if values else 1)

        def sy(v):
            return y0 - (y0 - y1) * v / top

        for t in yticks:
            py = sy(t)
            out.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x1}" y2="{py:.1f}" stroke="#dcdcdc" stroke-width="1"/>')
            out.append(f'<line x1="{x0 - 5}" y1="{py:.1f}" x2="{x0}" y2="{py:.1f}" stroke="#444"/>')
            out.append(f'<text x="{x0 - 8}" y="{py + 4:.1f}" text-anchor="end" font-size="12" {FONT}>{short_number(t)}</text>')
    mid = (y0 + y1) / 2
    out.append(f'<text x="{x0 - 58}" y="{mid:.1f}" text-anchor="middle" font-size="12" {FONT} '
               f'transform="rotate(-90 {x0 - 58} {mid:.1f})">{escape(ylabel)}</text>')

    if not values:
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{mid:.1f}" text-anchor="middle" font-size="14" fill="#888" {FONT}>no data</text>')
        return

    for i, server in enumerate(order):
        pts = series.get(server)
        if not pts:
            continue
        color = color_of(server, i)
        coords = [(sx(n), sy(v)) for n, v in pts]
        if len(coords) > 1:
            pl = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline points="{pl}" fill="none" stroke="{color}" stroke-width="2.2" stroke-linejoin="round">'
                       f'<title>{escape(server)}</title></polyline>')
        for (n, v), (x, y) in zip(pts, coords):
            out.append(f'<g><title>{escape(server)}: {n:,} subscribers, {v:,.4g}</title>'
                       f'{marker(MARKERS.get(server, "circle"), x, y, color)}</g>')


def machine_line(doc):
    m = doc.get("machine") or {}
    parts = []
    if m.get("cpu_model"):
        parts.append(str(m["cpu_model"]))
    if m.get("cores"):
        parts.append(f'{m["cores"]} cores')
    if m.get("mem_bytes"):
        parts.append(f'{m["mem_bytes"] / 2**30:.0f} GiB')
    if m.get("date"):
        parts.append(str(m["date"])[:10])
    if m.get("git_commit"):
        parts.append(f'commit {str(m["git_commit"])[:10]}')
    if m.get("quick"):
        parts.append("quick run")
    return ", ".join(parts)


def render_svg(doc, payload=100, rate="max"):
    """The two-panel SVG as a string."""
    thr = b1_series(doc, "deliveries_per_sec", payload, rate, positive=False)
    p99 = b1_series(doc, "p99_ms", payload, rate)
    order = [s for s in servers_in([r for r in doc.get("runs", []) if r.get("workload") == "B1"])
             if s in thr or s in p99]
    ns = [n for pts in list(thr.values()) + list(p99.values()) for n, _ in pts]
    xmax, _ = linear_ticks(max(ns) if ns else 20000)

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold" {FONT}>'
        f'B1 one-topic fanout, rate {escape(str(rate))}, {payload} B payload: server on 1 core, load on the other</text>',
        f'<text x="{WIDTH / 2}" y="45" text-anchor="middle" font-size="12" fill="#555" {FONT}>'
        f'{escape(machine_line(doc))}</text>',
    ]
    (ax0, ax1), (bx0, bx1) = PANELS_X
    panel(out, ax0, ax1, thr, order, "Deliveries per second", "deliveries/s", False, xmax)
    panel(out, bx0, bx1, p99, order, "p99 publish-to-receive latency", "p99 (ms, log scale)", True, xmax)

    # Legend, centred under the panels.
    item_w = 110
    lx = WIDTH / 2 - item_w * len(order) / 2
    ly = HEIGHT - 16
    for i, server in enumerate(order):
        color = color_of(server, i)
        x = lx + i * item_w
        out.append(f'<line x1="{x:.1f}" y1="{ly}" x2="{x + 26:.1f}" y2="{ly}" stroke="{color}" stroke-width="2.2"/>')
        out.append(marker(MARKERS.get(server, "circle"), x + 13, ly, color))
        out.append(f'<text x="{x + 32:.1f}" y="{ly + 4}" font-size="13" {FONT}>{escape(server)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(doc, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_svg(doc))


def main(argv):
    import json

    if len(argv) != 3:
        print("usage: plot.py RESULTS.json OUT.svg", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    write_svg(doc, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
