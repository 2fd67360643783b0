#!/usr/bin/env python3
"""Driver of scripts/bench: runs the product's benchmarks and their peers
side by side, several times, prints one table (figure, kiln, peers, ratio,
target, met?) of medians and writes it as JSON. See docs/performance.md.

Exit status: 0 when every benchmark program ran and gave a correct result
(a missed target is a figure, not a failure); 1 when one crashed, failed or
returned a wrong result (lost identity, wrong lookup, failed verify)."""
import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURES = []


def kv(text):
    """'key value' lines (or one line of key value pairs) -> dict."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        for i in range(0, len(parts) - 1, 2):
            try:
                out[parts[i]] = float(parts[i + 1])
            except ValueError:
                out[parts[i]] = parts[i + 1]
    return out


def run(cmd, keep=False, **kw):
    """stdout of cmd; None when it failed (recorded: the bench run fails),
    unless keep (then the figures it printed are used as well)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if p.returncode != 0:
        FAILURES.append("%s: exit %d" % (" ".join(cmd), p.returncode))
        sys.stderr.write("bench: %s failed (%d)\n%s" % (" ".join(cmd), p.returncode,
                                                       p.stderr[-2000:]))
        return p.stdout if keep else None
    return p.stdout


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


def fmt(v):
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if abs(v) >= 1e5:
            return "%.3g" % v
        return ("%.3g" % v) if abs(v) < 100 else "%.0f" % v
    return str(v)


class Table:
    """Rows of: figure, kiln value + unit, peers (text), ratio (text),
    target (text), met (True/False/None = no target)."""

    def __init__(self):
        self.rows = []

    def section(self, title):
        self.rows.append({"section": title})

    def row(self, figure, kiln, unit="", peers="", ratio="", target="",
            met=None, note="", prec=None):
        self.rows.append({"figure": figure, "kiln": kiln, "unit": unit,
                          "peers": peers, "ratio": ratio, "target": target,
                          "met": met, "note": note, "prec": prec})

    def show(self):
        cols = ("figure", "kiln", "peers", "ratio", "target", "met?")
        cells = []
        for r in self.rows:
            if "section" in r:
                cells.append(r)
                continue
            v = ("%.*f" % (r["prec"], r["kiln"])) if r["prec"] is not None else fmt(r["kiln"])
            k = v + (" " + r["unit"] if r["unit"] else "")
            m = "" if r["met"] is None else ("yes" if r["met"] else "NO")
            cells.append((r["figure"], k, r["peers"], r["ratio"], r["target"], m))
        w = [len(c) for c in cols]
        for c in cells:
            if isinstance(c, tuple):
                w = [max(a, len(b)) for a, b in zip(w, c)]
        line = "  ".join("%-*s" % (x, c) for x, c in zip(w, cols))
        print(line.rstrip())
        print("-" * len(line.rstrip()))
        for c in cells:
            if isinstance(c, dict):
                print("%s" % c["section"])
                continue
            print("  ".join("%-*s" % (x, v) for x, v in zip(w, c)).rstrip())
        notes = [r for r in self.rows if r.get("note")]
        if notes:
            print("\nNotes")
            for r in notes:
                print("  %s: %s" % (r["figure"], r["note"]))

    def json(self):
        return [r for r in self.rows]


def issuance(a, t, issue, tmp):
    peer_py = os.path.join(ROOT, "bench", "peers", "issue_peer.py")
    peer_sh = os.path.join(ROOT, "bench", "peers", "issue_peer.sh")
    n_prod = 4000 if a.full else 1000
    n_py = 600 if a.full else 150
    n_sh = 40 if a.full else 8
    res = {}
    for r in range(a.runs):
        c = kv(run([issue, "crypto", "-t", "1"]) or "")
        res.setdefault("crypto", []).append(c)
        for origin in ("host", "device"):
            for name, cmd in (
                    ("kiln", [issue, origin, "-n", str(n_prod), "-g", "256"]),
                    ("kiln_g1", [issue, origin, "-n", str(n_py), "-g", "1"]),
                    ("py", [a.python, peer_py, origin, "-n", str(n_py),
                            os.path.join(tmp, "py-%s-%d" % (origin, r))]),
                    ("sh", ["bash", peer_sh, origin, str(n_sh),
                            os.path.join(tmp, "sh-%s-%d" % (origin, r))])):
                out = run(cmd)
                res.setdefault((origin, name), []).append(kv(out or ""))
    cr = res["crypto"]
    limit = med([c.get("crypto_limit_per_s") for c in cr])
    t.section("1-2. Issuance: identities/s, one core (median of %d runs)" % a.runs)
    t.row("P-256 keygen (OpenSSL, this machine)", med([c.get("keygen_per_s") for c in cr]), "/s")
    t.row("ECDSA P-256 sign (OpenSSL, this machine)", med([c.get("sign_per_s") for c in cr]), "/s")
    t.row("crypto-only limit (keygen + sign)", limit, "/s")
    for origin in ("host", "device"):
        def m(name, key):
            return med([x.get(key) for x in res[(origin, name)]])

        def ratio(name):
            return med([x["per_s"] / y["per_s"]
                        for x, y in zip(res[(origin, "kiln")], res[(origin, name)])
                        if x.get("per_s") and y.get("per_s")])
        k, k1 = m("kiln", "per_s"), m("kiln_g1", "per_s")
        py, sh = m("py", "per_s"), m("sh", "per_s")
        rp, rs = ratio("py"), ratio("sh")
        rl = med([x["per_s"] / c["crypto_limit_per_s"] for x, c in zip(res[(origin, "kiln")], cr)
                  if x.get("per_s") and c.get("crypto_limit_per_s")])
        lbl = "host key origin" if origin == "host" else "device key origin (CSR)"
        peers = "(a) %s/s, (b) %s/s" % (fmt(py), fmt(sh))
        t.row("%s: kiln bulk, group commit 256" % lbl, k, "/s", peers,
              "%.2fx (a), %.0fx (b)" % (rp, rs), ">= 5x (a)", rp >= 5)
        if origin == "host":
            t.row("%s: kiln / crypto-only limit" % lbl, rl * 100, "%", "", "",
                  ">= 75%", rl >= 0.75)
        cpu_py = 1e6 * m("py", "cpu_s") / max(1, m("py", "identities"))
        cpu_k = m("kiln", "cpu_us_per_identity")
        parts = [(k, m("kiln", k + "_us")) for k in ("keygen", "csr", "sign", "registry", "commit")]
        busy = sum(v for _, v in parts if v == v)
        t.row("%s: CPU per identity" % lbl, cpu_k, "us",
              "(a) %.0f us, (b) %.0f us" % (cpu_py, 1e6 * m("sh", "cpu_s") / max(1, m("sh", "identities"))),
              "%.2fx (a)" % (cpu_py / cpu_k) if cpu_k else "",
              note="time per identity (ks_bulk_stats, wall): " + ", ".join(
                  "%s %.0f us (%.0f%%)" % (k, v, 100 * v / busy) for k, v in parts
                  if v == v and v > 0) if busy else "")
        t.row("%s: kiln, one commit per identity" % lbl, k1, "/s", "(a) %s/s" % fmt(py),
              "%.2fx (a)" % (k1 / py) if py else "",
              note="the same path with groups of 1: one fsync per identity, as the peers")


def station(a, t, station_bin, kilnd, sim):
    n_station = 128 if a.full else 32
    st = {}
    for r in range(a.runs):
        for origin in ("device", "host"):
            slots = "1,4,16,64" if origin == "device" else "1"
            out = run([station_bin, "-s", slots, "-n", str(n_station), "-o", origin,
                       kilnd, sim], keep=True)
            for line in (out or "").splitlines():
                d = kv(line)
                if "slots" in d:
                    st.setdefault((origin, int(d["slots"])), []).append(d)
    t.section("3. Station through kilnd, simulated boards, device key origin (median of %d)" % a.runs)
    base = None
    for s in (1, 4, 16, 64):
        rows = st.get(("device", s), [])
        if not rows:
            continue
        rate = med([x["per_s"] for x in rows])
        cpu = med([x["kilnd_cpu_ms_per_device"] + x.get("signer_cpu_ms_per_device", 0)
                   for x in rows])
        if s == 1:
            base = rows
        eff = med([x["per_s"] / (y["per_s"] * s) for x, y in zip(rows, base or rows)])
        fails = sum(int(x.get("failed", 0)) for x in rows)
        note = ("session %.0f ms; host CPU %.2f ms/device (kilnd %.2f + signer %.2f); "
                "cores busy %.0f%% (whole machine, all processes)" % (
                    med([x["session_ms"] for x in rows]), cpu,
                    med([x["kilnd_cpu_ms_per_device"] for x in rows]),
                    med([x.get("signer_cpu_ms_per_device", 0) for x in rows]),
                    med([x.get("cores_busy_pct") for x in rows])))
        if fails:
            note += "; %d sessions NOT ok (see stderr)" % fails
        if s == 1:
            t.row("%2d slot: devices/s" % s, rate, "dev/s", note=note)
            t.row(" 1 slot: host CPU per device (kilnd + signer)", cpu, "ms", "", "",
                  "<= 2 ms", cpu <= 2.0)
        else:
            t.row("%2d slots: devices/s" % s, rate, "dev/s", "",
                  "%.0f%% of %d x 1 slot" % (eff * 100, s), ">= 90% scaling",
                  eff >= 0.9, note=note)
    t.section("4. Wire per full session (kilnd counters); link time from bytes, 10 bits/byte")
    for origin in ("device", "host"):
        rows = st.get((origin, 1), [])
        if not rows:
            continue
        tx = med([x["bytes_tx"] for x in rows])
        rx = med([x["bytes_rx"] for x in rows])
        rt = med([x["round_trips"] for x in rows])
        tot = tx + rx
        t.row("%s key origin: bytes (tx + rx)" % origin, tot, "B", "", "",
              "<= 2.5 KiB", tot <= 2560, note="%.0f tx + %.0f rx" % (tx, rx))
        t.row("%s key origin: round trips" % origin, rt, "", "", "", "<= 8", rt <= 8)
        t.row("%s key origin: link time @115200 / @921600" % origin,
              tot * 10 / 115200 * 1e3, "ms", "", "", "",
              note="@921600: %.1f ms" % (tot * 10 / 921600 * 1e3))
    return st


def qemu(a, t, station_bin, kilnd, sim, st):
    q = []
    if a.qemu_elf and os.path.exists(a.qemu_elf):
        for r in range(a.runs):
            out = run([station_bin, "-s", "0", "-q", "3", "-Q",
                       os.path.join(ROOT, "scripts", "qemu-board"), "-E", a.qemu_elf,
                       kilnd, sim])
            for line in (out or "").splitlines():
                if line.startswith("qemu"):
                    q.append(kv(line[len("qemu "):]))
    if not q:
        t.row("QEMU board session", "n/a", "", note="no QEMU firmware built (build-qemu/)")
        return q
    sm = med([x["session_ms"] for x in q])
    tot = med([x["bytes_tx"] + x["bytes_rx"] for x in q])
    rows = st.get(("device", 1), [])
    sim_ms = med([x["session_ms"] for x in rows]) if rows else float("nan")
    t.row("QEMU board session, measured (device key origin)", sm, "ms", "",
          "%.2fx sim session" % (sm / sim_ms), "<= 1.2x link + compute", None,
          note="%.0f B; not judged: QEMU's UART is not paced at a baud rate and the "
               "firmware does not report its compute time, so link + compute is not "
               "known separately (the native simulator's session, %.0f ms, runs the same "
               "code at host speed; at 115200 baud the link alone is %.0f ms)"
               % (tot, sim_ms, tot * 10 / 115200 * 1e3))
    return q


def footprint(a, t, q):
    t.section("5. Agent footprint (arm-none-eabi-size; RAM = .data+.bss)")
    for elf in [e for e in a.boards.split(",") if e]:
        name = os.path.basename(elf)
        if not os.path.exists(elf):
            t.row(name, "n/a", "", note="not built (scripts/test builds it)")
            continue
        out = run(["arm-none-eabi-size", elf])
        if not out:
            continue
        text, data, bss = [int(x) for x in out.splitlines()[-1].split()[:3]]
        flash, ram = text + data, data + bss
        t.row("%s: flash (text+data)" % name, flash / 1024, "KiB", "", "",
              "<= 48 KiB", flash <= 48 * 1024, note="%d B" % flash, prec=2)
        if "qemu" in elf and q:
            hwm = med([x["stack_hwm"] for x in q])
            heap = med([x["heap_hwm"] for x in q])
            need = med([x["static_ram"] for x in q]) + hwm
            t.row("%s: RAM static + stack high-water" % name, need / 1024, "KiB", "", "",
                  "<= 12 KiB", need <= 12 * 1024, prec=1,
                  note="stack high-water %.0f of %.0f B; mbedTLS heap high-water %.0f of %.0f B"
                       % (hwm, med([x["stack_size"] for x in q]), heap,
                          med([x["heap_size"] for x in q])))
        else:
            t.row("%s: RAM (.data+.bss, stack not included)" % name, ram / 1024, "KiB", "",
                  "", "<= 12 KiB", ram <= 12 * 1024, prec=1)


def registry(a, t, regbin, kiln):
    """6: lookups in registries of 10^5 (quick) or 10^6 and 10^7 devices;
    audit verify over a log of operator events (the chain and its signed
    checkpoints) and over a registry made by the bulk path (chain plus a
    certificate per 3 events). The files are kept under the build
    directory and reused by the next full run: the lookup registries
    whatever changed (ks_reg_open() migrates them forward, as in the
    field), the audit logs as long as the schema and the registry, audit
    and issuance code they were made with are the same. --quick makes its
    small ones afresh in a temporary directory."""
    if a.full:
        h = hashlib.sha256()
        for path in sorted(glob.glob(os.path.join(ROOT, "db", "*.sql")) +
                           glob.glob(os.path.join(ROOT, "host", "lib", "registry*.c")) +
                           glob.glob(os.path.join(ROOT, "host", "lib", "db*.c")) +
                           [os.path.join(ROOT, "host", "lib", f)
                            for f in ("audit.c", "bulk.c", "signer.c")]):
            with open(path, "rb") as f:
                h.update(f.read())
        top = os.path.join(a.build, "bench-registry")
        lookup = os.path.join(top, "lookup")
        audit = os.path.join(top, "audit-" + h.hexdigest()[:12])
        os.makedirs(top, exist_ok=True)
        for old in os.listdir(top):
            if old not in ("lookup", os.path.basename(audit)):
                p = os.path.join(top, old)
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
        tmp = None
    else:
        tmp = tempfile.mkdtemp(prefix="kiln-bench-reg-", dir="/var/tmp")
        lookup = audit = tmp
    os.makedirs(lookup, exist_ok=True)
    os.makedirs(audit, exist_ok=True)
    try:
        registry_figures(a, t, regbin, kiln, lookup, audit)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def registry_figures(a, t, regbin, kiln, lookup, audit):
    t.section("6. Registry at scale (SQLite; lookups through ks_reg_device_get)")
    sizes = [10 ** 6, 10 ** 7] if a.full else [10 ** 5]
    for n in sizes:
        out = run([regbin, "lookup", "-N", str(n), "-k", "5000", "-d", lookup])
        d = kv(out or "")
        if not d:
            continue
        gen = ("generated in %.0f s" % d["generate_s"]) if not d.get("reused") else "reused"
        cached = ""
        try:
            res, size = (int(x) for x in subprocess.run(
                ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES,SIZE",
                 os.path.join(lookup, "lookup-%d.db" % n)], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True).stdout.split())
            cached = "; %.0f%% of the file in the page cache after the run" % (100 * res / size)
        except (OSError, ValueError):
            pass
        for key, what in (("uid", "UID"), ("serial", "device serial")):
            t.row("device by %s, %s devices: p99" % (what, fmt(float(n))),
                  d["%s_p99_us" % key] / 1e3, "ms", "", "", "<= 1 ms p99",
                  d["%s_p99_us" % key] <= 1000,
                  note="p50 %.0f us, max %.0f us over %d random devices after 20,000 "
                       "untimed ones; first %d: p99 %.2f ms; %.0f MB file, %s%s"
                       % (d["%s_p50_us" % key], d["%s_max_us" % key], d["lookups"],
                          d["lookups"], d["first_%s_p99_us" % key] / 1e3,
                          d.get("db_mb", 0), gen, cached))
    ev = 10 ** 6 if a.full else 10 ** 5
    chain_dir = os.path.join(audit, "chain-%d" % ev)
    out = run([regbin, "chain", "-e", str(ev), "-d", chain_dir])
    d = kv(out or "")
    if d:
        t.row("audit verify, %s operator events (chain + checkpoints)" % fmt(float(ev)),
              d["events_per_s"], "events/s", "", "", ">= 500k/s",
              d["events_per_s"] >= 5e5,
              note="%.0f rows, %.0f checkpoint signatures in %.2f s (ks_audit_verify)"
                   % (d["events"], d["checkpoints"], d["verify_s"]))
        cli = [kiln, "audit", "verify", "--db", os.path.join(chain_dir, "registry.db"),
               "--ca", os.path.join(chain_dir, "ca", "chain.pem"),
               "--station-pub", os.path.join(chain_dir, "station.pub")]
        t0 = time.monotonic()
        ok = run(cli) is not None
        wall = time.monotonic() - t0
        if ok:
            t.row("  the same through `kiln audit verify` (process wall time)",
                  d["events"] / wall, "events/s", note="%.2f s" % wall)
    # certificates cost the same per event at any size: 10^5 events (33k
    # identities through the bulk path) keep the first full run short
    ev = 10 ** 5 if a.full else 6000
    out = run([regbin, "audit", "-e", str(ev), "-d",
               os.path.join(audit, "bulk-%d" % ev)])
    d = kv(out or "")
    if d:
        t.row("audit verify, %s events of bulk issuance (+ certificates)" % fmt(float(ev)),
              d["events_per_s"], "events/s", "", "", ">= 500k/s",
              d["events_per_s"] >= 5e5,
              note="%.0f rows and %.0f certificates (each chain-verified against the CA) "
                   "in %.2f s" % (d["events"], d["certificates"], d["verify_s"]))


def postgres(a, t):
    """Issue 9: issuance rate with 1 and 4 stations sharing a PostgreSQL
    registry (a throwaway server) vs one station on SQLite, through the
    bulk path: groups of 256 identities per durable commit, and groups of
    1 (one commit per identity, closer to a session's per-step commits)."""
    pgbin = os.path.join(a.build, "bench", "bench_pg")
    t.section("7. Shared registry: a line of stations on PostgreSQL vs one station on SQLite "
              "(host key origin, bulk path)")
    if not os.path.exists(pgbin):
        t.row("issuance with 1 and 4 stations on PostgreSQL", "n/a", "",
              note="not measured: this build has no bench/bench_pg (libpq missing)")
        return
    res = {}
    skipped = ""
    for r in range(min(a.runs, 3) if a.full else 1):
        for group, n in ((256, 512 if a.full else 200), (1, 150 if a.full else 60)):
            out = run([pgbin, "-n", str(n), "-g", str(group), "-s", "1,4"])
            for line in (out or "").splitlines():
                if line.startswith("skipped"):
                    skipped = line[len("skipped "):]
                d = kv(line)
                if "stations" in d and "backend" in d:
                    res.setdefault((int(d["group"]), d["backend"], int(d["stations"])),
                                   []).append(d)
    for group in (256, 1):
        base = med([x["per_s"] for x in res.get((group, "sqlite", 1), [])])
        for backend, n in (("sqlite", 1), ("postgresql", 1), ("postgresql", 4)):
            rows = res.get((group, backend, n), [])
            label = "%s, %d station%s, %s" % (
                "SQLite" if backend == "sqlite" else "PostgreSQL", n, "s" if n > 1 else "",
                "group commit 256" if group > 1 else "one commit per identity")
            if not rows:
                t.row(label, "n/a", "", note=skipped or "no result")
                continue
            rate = med([x["per_s"] for x in rows])
            t.row(label + ": identities/s", rate, "/s",
                  "" if backend == "sqlite" else "SQLite 1 station %s/s" % fmt(base),
                  "" if backend == "sqlite" else "%.2fx" % (rate / base))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--qemu-elf", default="")
    ap.add_argument("--boards", default="", help="ELF list for sizes")
    ap.add_argument("--json", default="", help="output file (default BUILD/bench.json)")
    a = ap.parse_args()
    b = a.build
    issue = os.path.join(b, "bench", "bench_issue")
    station_bin = os.path.join(b, "bench", "bench_station")
    regbin = os.path.join(b, "bench", "bench_registry")
    kilnd = os.path.join(b, "host", "kilnd", "kilnd")
    kiln = os.path.join(b, "host", "kiln", "kiln")
    sim = os.path.join(b, "device", "kiln-agent-sim")
    tmp = tempfile.mkdtemp(prefix="kiln-bench-", dir="/var/tmp")
    t = Table()
    t0 = time.monotonic()
    try:
        issuance(a, t, issue, tmp)
        st = station(a, t, station_bin, kilnd, sim)
        q = qemu(a, t, station_bin, kilnd, sim, st)
        footprint(a, t, q)
        registry(a, t, regbin, kiln)
        postgres(a, t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    head = ("kiln benchmarks (%s, %d runs, %d cores, load average %.1f/%.1f/%.1f "
            "at end, %.0f s)" % ("full" if a.full else "quick", a.runs, os.cpu_count(),
                                 load[0], load[1], load[2], time.monotonic() - t0))
    print(head + "\n")
    t.show()
    met = [r for r in t.rows if r.get("met") is not None]
    print("\n%d of %d targets met" % (sum(1 for r in met if r["met"]), len(met)))
    path = a.json or os.path.join(b, "bench.json")
    with open(path, "w") as f:
        json.dump({"title": head, "mode": "full" if a.full else "quick", "runs": a.runs,
                   "cores": os.cpu_count(), "load_average": load,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "failures": FAILURES, "rows": t.json()}, f, indent=1)
    print("written to %s" % path)
    if FAILURES:
        print("\n%d benchmark program(s) FAILED (crash or wrong result):" % len(FAILURES))
        for f in FAILURES:
            print("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
