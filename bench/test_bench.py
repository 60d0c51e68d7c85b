"""Self-test of bench/run's report, plot and target code, and of the orchestrator itself with
the fake servers and bench (BENCH_FAKE=1). Fast (a few seconds), no real servers.

    python3 -m unittest discover -s bench -p 'test_*.py'      # or: bench/selftest
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import plot  # noqa: E402
import report  # noqa: E402

FIXTURE = os.path.join(HERE, "testdata", "fake-full.json")
SVG_NS = "{http://www.w3.org/2000/svg}"


def load():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def by_name(targets, fragment):
    found = [t for t in targets if fragment in t["name"]]
    assert len(found) == 1, (fragment, [t["name"] for t in targets])
    return found[0]


class Targets(unittest.TestCase):
    def test_fixture_targets(self):
        doc = load()
        t = report.compute_targets(doc)
        self.assertEqual(len(t), 9)
        raw1k = by_name(t, "raw-ws, 1k")
        c = report.find_b1(doc, "crier", 1000)["deliveries_per_sec"]
        r = report.find_b1(doc, "raw-ws", 1000)["deliveries_per_sec"]
        self.assertAlmostEqual(raw1k["value"], c / r * 100)
        self.assertEqual(raw1k["status"], "met" if c / r >= 0.9 else "missed")
        sio = by_name(t, "socket.io, 10k")
        self.assertEqual(sio["unit"], "×")
        self.assertGreater(sio["value"], 1)
        mem = by_name(t, "Memory")
        run = [x for x in doc["runs"] if x["workload"] == "memory" and x["server"] == "crier"
               and x["subscribers"] == 10000][0]
        self.assertAlmostEqual(mem["value"], run["idle_rss_per_conn_bytes"] / 1024)
        b2 = by_name(t, "B2 crier p99")
        self.assertEqual(b2["status"], "met")
        self.assertEqual(by_name(t, "delivery ratio")["status"], "met")
        capacity = by_name(t, "B2 capacity")
        self.assertIsNotNone(capacity["value"])
        self.assertEqual(capacity["status"], "met" if capacity["value"] >= 0.9 else "missed")
        cpu = by_name(t, "B2 server CPU")
        self.assertIsNotNone(cpu["value"])
        self.assertEqual(cpu["status"], "met" if cpu["value"] <= 1.05 else "missed")

    def test_rls_targets_only_with_b3(self):
        doc = load()
        self.assertFalse([x for x in report.compute_targets(doc) if "RLS" in x["name"]])
        doc["runs"].append({"workload": "B3", "server": "crier", "subscribers": 100, "rate": 1000.0,
                            "p50_ms": 4.0, "p99_ms": 20.0, "delivery_ratio": 1.0,
                            "pgchanges": {"rls": "all"}})
        t = report.compute_targets(doc)
        self.assertEqual(by_name(t, "RLS all, 1,000 changes/s: p50")["status"], "met")
        self.assertEqual(by_name(t, "RLS all, 1,000 changes/s: p99")["status"], "missed")

    def test_missed_and_not_measured(self):
        doc = load()
        for r in doc["runs"]:
            if r["server"] == "crier" and r["workload"] == "B1" and r["rate"] == "max":
                r["deliveries_per_sec"] /= 10
            if r["server"] == "crier" and r["workload"] == "B1" and r["rate"] == 10 and r["subscribers"] == 5000:
                r["delivery_ratio"] = 0.97
        doc["runs"] = [r for r in doc["runs"] if not (r["server"] == "crier" and r["workload"] == "memory")]
        t = report.compute_targets(doc)
        self.assertEqual(by_name(t, "raw-ws, 1k")["status"], "missed")
        self.assertEqual(by_name(t, "socket.io, 1k")["status"], "missed")
        dr = by_name(t, "delivery ratio")
        self.assertEqual(dr["status"], "missed")
        self.assertAlmostEqual(dr["value"], 97.0)
        self.assertIn("5,000", dr["detail"])
        self.assertEqual(by_name(t, "Memory")["status"], "not measured")

    def test_b2_ramp_stopped_early_is_a_miss(self):
        doc = load()
        doc["runs"] = [r for r in doc["runs"] if not (r["workload"] == "B2" and r["server"] == "crier"
                                                      and r["subscribers"] >= 3000)]
        last = [r for r in doc["runs"] if r["workload"] == "B2" and r["server"] == "crier"][-1]
        last["p99_ms"], last["stopped_because"] = 400.0, "p99"
        b2 = by_name(report.compute_targets(doc), "B2 crier p99")
        self.assertEqual(b2["status"], "missed")
        self.assertIn("p99", b2["detail"])

    def test_no_runs_at_all(self):
        t = report.compute_targets({"runs": []})
        self.assertTrue(all(x["status"] == "not measured" for x in t))
        text = report.targets_text(t)
        self.assertIn("not measured", text)

    def test_rate_spellings(self):
        doc = load()
        for r in doc["runs"]:
            if r.get("rate") == 10:
                r["rate"] = 10.0
            elif r.get("rate") == "max":
                r["rate"] = " max"
        self.assertEqual(report.compute_targets(doc), report.compute_targets(load()))

    def test_without_planned_counts(self):
        doc = load()
        self.assertTrue(any(r["subscribers"] == 4002 for r in doc["runs"] if r["workload"] == "B2"))
        for r in doc["runs"]:
            r.pop("planned_subscribers", None)
        self.assertEqual(report.compute_targets(doc), report.compute_targets(load()))

    def test_error_runs_ignored(self):
        doc = load()
        doc["runs"].append({"workload": "B1", "server": "crier", "subscribers": 1000, "error": "boom"})
        self.assertEqual(report.compute_targets(doc), report.compute_targets(load()))


class Docs(unittest.TestCase):
    def test_block_has_all_tables(self):
        doc = load()
        doc["targets"] = report.compute_targets(doc)
        doc["errors"] = [{"workload": "B1", "server": "nats", "subscribers": 19000,
                          "error": "nats exited with status 1 | before it was ready\n    | tail", "log": "x.log"}]
        block = report.render_block(doc, "benchmarks.svg")
        self.assertTrue(block.startswith(report.BEGIN))
        self.assertTrue(block.rstrip().endswith(report.END))
        for needle in ("### Targets", "### B1: one-topic fanout", "### Memory", "### B2", "### Failures",
                       "![", "(benchmarks.svg)", "| crier |", "| socket.io |", "19,000", "Synthetic numbers",
                       "taskset -c 0", doc["machine"]["command"]):
            self.assertIn(needle, block)
        self.assertIn("before it was ready", block)
        self.assertNotIn("    | tail", block)  # only the first line of an error goes in the table
        # Every table row has as many cells as its header.
        rows = [line for line in block.splitlines() if line.startswith("|")]
        self.assertGreater(len(rows), 40)

    def test_update_docs_keeps_hand_written_parts(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "BENCHMARKS.md")
            report.update_docs(path, report.BEGIN + "\nfirst\n" + report.END + "\n")
            with open(path, encoding="utf-8") as f:
                text = f.read()
            self.assertTrue(text.startswith("# Benchmarks"))
            text = "Hand intro.\n\n" + text + "\n## Hand-written notes\n\nKeep me.\n"
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            block = report.render_block(load())
            report.update_docs(path, block)
            report.update_docs(path, block)
            with open(path, encoding="utf-8") as f:
                new = f.read()
            self.assertTrue(new.startswith("Hand intro.\n"))
            self.assertIn("Keep me.", new)
            self.assertNotIn("first", new)
            self.assertEqual(new.count(report.BEGIN), 1)
            self.assertEqual(new.count(report.END), 1)
            self.assertIn("### B1", new)

    def test_update_docs_without_markers_appends(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "B.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write("# Old\n")
            report.update_docs(path, report.BEGIN + "\nx\n" + report.END + "\n")
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), "# Old\n\n" + report.BEGIN + "\nx\n" + report.END + "\n")


class Plot(unittest.TestCase):
    def parse(self, svg):
        root = ET.fromstring(svg.encode("utf-8"))
        self.assertEqual(root.tag, SVG_NS + "svg")
        return root

    def test_fixture_svg(self):
        doc = load()
        root = self.parse(plot.render_svg(doc))
        lines = root.findall(f".//{SVG_NS}polyline")
        servers = {r["server"] for r in doc["runs"] if r["workload"] == "B1"}
        self.assertEqual(len(lines), 2 * len(servers))  # one per server per panel
        texts = [t.text or "" for t in root.iter(SVG_NS + "text")]
        for s in servers:
            self.assertIn(s, texts)
        self.assertIn("deliveries/s", texts)
        self.assertIn("subscribers (one topic)", texts)
        for pl in lines:
            for pt in pl.get("points").split():
                x, y = map(float, pt.split(","))
                self.assertTrue(0 <= x <= plot.WIDTH and 0 <= y <= plot.HEIGHT, pt)

    def test_empty_and_sparse(self):
        root = self.parse(plot.render_svg({"runs": []}))
        self.assertIn("no data", [t.text for t in root.iter(SVG_NS + "text")])
        doc = {"machine": {"cpu_model": "A <fancy> & CPU"},
               "runs": [{"workload": "B1", "server": "crier", "subscribers": 1000, "payload_bytes": 100,
                         "rate": "max", "deliveries_per_sec": 1234.0, "p99_ms": 3.0},
                        {"workload": "B1", "server": "other", "subscribers": 1000, "payload_bytes": 100,
                         "rate": "max", "deliveries_per_sec": None, "p99_ms": 0.0}]}
        root = self.parse(plot.render_svg(doc))
        self.assertEqual(root.findall(f".//{SVG_NS}polyline"), [])  # one point: marker only
        self.assertTrue(any("fancy" in (t.text or "") for t in root.iter(SVG_NS + "text")))

    def test_log_ticks(self):
        lo, hi, major, minor = plot.log_ticks(3.0, 4.0)
        self.assertEqual((lo, hi), (1.0, 10.0))
        lo, hi, major, _ = plot.log_ticks(0.4, 1200)
        self.assertEqual(major, [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0])

    def test_cli(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "p.svg")
            subprocess.run([sys.executable, os.path.join(HERE, "plot.py"), FIXTURE, out], check=True)
            ET.parse(out)


def alive_with(fragment):
    """pids of live processes whose command line contains `fragment`."""
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if fragment.encode() in f.read():
                        pids.append(int(p))
            except OSError:
                pass
    return pids


class Orchestrator(unittest.TestCase):
    """bench/run end to end with fake servers and bench, including failures and a hang."""

    # Port bases stay below Linux's ephemeral range (32768-60999): a port there may be
    # the local end of some other test's live connection, and then cannot be bound.
    def test_fake_run_with_failures(self):
        with tempfile.TemporaryDirectory() as d:
            out, md, svg = (os.path.join(d, n) for n in ("r.json", "B.md", "b.svg"))
            port_base = 20000 + os.getpid() % 200 * 5
            env = dict(os.environ, BENCH_FAKE="1", BENCH_FAKE_FAIL="start:ws,crash:nats,hang:raw-ws",
                       BENCH_TIMEOUT_SCALE="0.1")
            cmd = [sys.executable, os.path.join(HERE, "run"), "--quick", "--docs", "--servers",
                   "crier,raw-ws,ws,nats", "--workloads", "b2", "--out", out, "--docs-file", md,
                   "--svg-file", svg, "--log-dir", os.path.join(d, "logs"), "--port-base", str(port_base)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)  # errors were recorded
            with open(out, encoding="utf-8") as f:
                doc = json.load(f)
            servers = {r["server"] for r in doc["runs"]}
            self.assertIn("crier", servers)
            self.assertNotIn("ws", servers)
            errs = {e["server"]: e["error"] for e in doc["errors"]}
            self.assertIn("before it was ready", errs["ws"])
            self.assertIn("during the bench", errs["nats"])
            self.assertIn("timed out", errs["raw-ws"])
            self.assertTrue(doc["machine"]["quick"])
            self.assertEqual(len(doc["targets"]), 9)
            self.assertIn("Wall time", p.stdout)
            ET.parse(svg)
            with open(md, encoding="utf-8") as f:
                self.assertIn("### Failures", f.read())
            self.assertEqual(alive_with(f"127.0.0.1:{port_base + 1}/"), [])  # the hung bench was killed
            self.assertEqual(alive_with(f"--port {port_base}"), [])  # servers stopped

    def test_fake_run_with_a_baseline_binary(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            port_base = 21500 + os.getpid() % 200 * 7
            env = dict(os.environ, BENCH_FAKE="1", BENCH_TIMEOUT_SCALE="0.1")
            cmd = [sys.executable, os.path.join(HERE, "run"), "--quick", "--no-docs", "--servers", "crier",
                   "--baseline", sys.executable, "--workloads", "b1", "--out", out,
                   "--log-dir", os.path.join(d, "logs"), "--port-base", str(port_base)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(out, encoding="utf-8") as f:
                doc = json.load(f)
            self.assertEqual(doc["plan"]["servers"], ["crier", "crier-base"])
            self.assertEqual({r["server"] for r in doc["runs"]}, {"crier", "crier-base"})

    def test_fake_b3_only_when_asked(self):
        with tempfile.TemporaryDirectory() as d:
            out, md = os.path.join(d, "r.json"), os.path.join(d, "B.md")
            port_base = 23500 + os.getpid() % 200 * 7
            env = dict(os.environ, BENCH_FAKE="1", BENCH_TIMEOUT_SCALE="0.1")
            cmd = [sys.executable, os.path.join(HERE, "run"), "--quick", "--docs", "--servers", "crier,ws",
                   "--workloads", "b3", "--b3", "postgres://u:secret@127.0.0.1:1/db", "--out", out,
                   "--docs-file", md, "--svg-file", os.path.join(d, "b.svg"),
                   "--log-dir", os.path.join(d, "logs"), "--port-base", str(port_base)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(out, encoding="utf-8") as f:
                doc = json.load(f)
            b3 = [r for r in doc["runs"] if r["workload"] == "B3"]
            self.assertEqual([r["pgchanges"]["rls"] for r in b3], ["off", "all", "per-user"])
            self.assertEqual({r["server"] for r in doc["runs"]}, {"crier"})  # B3 is crier's alone
            self.assertEqual(doc["plan"]["b3"]["database"], "given")
            self.assertNotIn("secret", json.dumps(doc))  # the database URL is not recorded
            with open(md, encoding="utf-8") as f:
                self.assertIn("### B3: postgres changes", f.read())

            # Not asked for (the default workloads), no B3; b3 alone runs on a private database.
            for args, b3_runs in (([], 0), (["--workloads", "b3"], 3)):
                cmd = [sys.executable, os.path.join(HERE, "run"), "--quick", "--no-docs", "--servers", "crier",
                       "--out", out, "--log-dir", os.path.join(d, "logs"), "--port-base", str(port_base)] + args
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                with open(out, encoding="utf-8") as f:
                    doc = json.load(f)
                self.assertEqual(len([r for r in doc["runs"] if r["workload"] == "B3"]), b3_runs, args)
                self.assertEqual("b3" in doc["plan"]["workloads"], b3_runs > 0, args)

    def test_fake_b4_runs_one_node_then_two_beside_it(self):
        with tempfile.TemporaryDirectory() as d:
            out, md = os.path.join(d, "r.json"), os.path.join(d, "B.md")
            port_base = 25500 + os.getpid() % 200 * 9
            env = dict(os.environ, BENCH_FAKE="1", BENCH_TIMEOUT_SCALE="0.1")
            cmd = [sys.executable, os.path.join(HERE, "run"), "--quick", "--docs", "--servers", "crier",
                   "--workloads", "b4", "--out", out, "--docs-file", md, "--svg-file", os.path.join(d, "b.svg"),
                   "--log-dir", os.path.join(d, "logs"), "--port-base", str(port_base)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(out, encoding="utf-8") as f:
                doc = json.load(f)
            b4 = [r for r in doc["runs"] if r["workload"] == "B4"]
            self.assertEqual([r["variant"] for r in b4], ["single", "cluster"])
            self.assertEqual(set(b4[1]["peer_cpu_pct"]), {"node-b", "redis"})
            self.assertFalse([r for r in doc["runs"] if r["workload"] == "B1"], "B4's runs are not B1's")
            with open(md, encoding="utf-8") as f:
                text = f.read()
            self.assertIn("### B4: a two-node cluster on one Redis", text)
            self.assertIn("0.90×", text)

    def test_bad_arguments(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "run"), "--servers", "crier,apache"],
                           capture_output=True, text=True, env=dict(os.environ, BENCH_FAKE="1"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("apache", p.stderr)


if __name__ == "__main__":
    unittest.main()
