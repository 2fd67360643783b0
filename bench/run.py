#!/usr/bin/env python3
"""Driver of scripts/bench: runs the product's benchmarks and their peers
side by side, several times, and prints one table of medians, ratios and
targets. See docs/benchmarks.md. Not part of the test suite."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    """stdout of cmd; None when it failed, unless keep (then the figures
    it printed are used and its failures are counted in the table)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if p.returncode != 0:
        sys.stderr.write("bench: %s failed (%d)\n%s" % (" ".join(cmd), p.returncode,
                                                       p.stderr[-2000:]))
        return p.stdout if keep else None
    return p.stdout


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


class Table:
    def __init__(self):
        self.rows = []
        self.verdicts = []

    def row(self, what, value, unit="", note=""):
        self.rows.append((what, value, unit, note))

    def target(self, name, ok, detail):
        self.verdicts.append((name, ok, detail))

    def show(self):
        w = max(len(r[0]) for r in self.rows if not r[0].startswith("#")) + 2
        for what, value, unit, note in self.rows:
            if what.startswith("#"):
                print("\n" + what[1:].strip())
                continue
            v = ("%.4g" % value) if isinstance(value, float) else str(value)
            print("  %-*s %12s %-10s %s" % (w, what, v, unit, note))
        print("\nTargets")
        for name, ok, detail in self.verdicts:
            print("  [%s] %s: %s" % ("met " if ok else "MISS", name, detail))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--qemu-elf", default="")
    ap.add_argument("--boards", default="", help="ELF list for sizes")
    a = ap.parse_args()
    b = a.build
    issue = os.path.join(b, "bench", "bench_issue")
    station = os.path.join(b, "bench", "bench_station")
    kilnd = os.path.join(b, "host", "kilnd", "kilnd")
    sim = os.path.join(b, "device", "kiln-agent-sim")
    peer_py = os.path.join(ROOT, "bench", "peers", "issue_peer.py")
    peer_sh = os.path.join(ROOT, "bench", "peers", "issue_peer.sh")
    n_prod = 4000 if a.full else 1500
    n_py = 600 if a.full else 200
    n_sh = 40 if a.full else 12
    n_station = 128 if a.full else 48
    tmp = tempfile.mkdtemp(prefix="kiln-bench-", dir="/var/tmp")
    t = Table()

    # 1 + 2: issuance, product vs peers, interleaved run by run
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
    t.row("#1-2. Issuance: identities/s (median of %d runs; wall clock, one core)" % a.runs, "")
    t.row("P-256 keygen (OpenSSL, this machine)", med([c.get("keygen_per_s") for c in cr]), "/s")
    t.row("ECDSA P-256 sign (OpenSSL, this machine)", med([c.get("sign_per_s") for c in cr]), "/s")
    t.row("crypto-only limit (keygen + sign)", limit, "/s")
    for origin in ("host", "device"):
        def m(name, key):
            return med([x.get(key) for x in res[(origin, name)]])
        k, k1 = m("kiln", "per_s"), m("kiln_g1", "per_s")
        py, sh = m("py", "per_s"), m("sh", "per_s")
        lbl = "host key origin" if origin == "host" else "device key origin (CSR)"
        t.row("%s: kiln bulk, group commit 256" % lbl, k, "/s",
              "%.0f us CPU/identity" % m("kiln", "cpu_us_per_identity"))
        t.row("%s: kiln, one commit per identity" % lbl, k1, "/s",
              "%.0f us CPU/identity" % m("kiln_g1", "cpu_us_per_identity"))
        t.row("%s: peer (a) Python cryptography+sqlite3" % lbl, py, "/s",
              "%.0f us CPU/identity" % (1e6 * m("py", "cpu_s") / max(1, m("py", "identities"))))
        t.row("%s: peer (b) openssl+sqlite3 shell" % lbl, sh, "/s",
              "%.0f us CPU/identity" % (1e6 * m("sh", "cpu_s") / max(1, m("sh", "identities"))))
        rp = med([x["per_s"] / y["per_s"] for x, y in zip(res[(origin, "kiln")], res[(origin, "py")])
                  if x.get("per_s") and y.get("per_s")])
        rs = med([x["per_s"] / y["per_s"] for x, y in zip(res[(origin, "kiln")], res[(origin, "sh")])
                  if x.get("per_s") and y.get("per_s")])
        rl = med([x["per_s"] / c["crypto_limit_per_s"] for x, c in zip(res[(origin, "kiln")], cr)
                  if x.get("per_s") and c.get("crypto_limit_per_s")])
        t.row("%s: kiln / peer (a)" % lbl, rp, "x")
        t.row("%s: kiln / peer (b)" % lbl, rs, "x")
        t.row("%s: kiln / crypto-only limit" % lbl, rl * 100, "%")
        t.target("%s >= 5x peer (a)" % lbl, rp >= 5, "%.2fx" % rp)
        if origin == "host":
            t.target("%s >= 75%% of crypto-only limit" % lbl, rl >= 0.75, "%.0f%%" % (rl * 100))

    # 3 + 4: station through kilnd
    st = {}
    for r in range(a.runs):
        for origin in ("device", "host"):
            slots = "1,4,16,64" if origin == "device" else "1"
            out = run([station, "-s", slots, "-n", str(n_station), "-o", origin,
                       kilnd, sim], keep=True)
            for line in (out or "").splitlines():
                d = kv(line)
                if "slots" in d:
                    st.setdefault((origin, int(d["slots"])), []).append(d)
    t.row("#3. Station through kilnd, simulated boards (device key origin), median of %d" % a.runs, "")
    base = None
    for s in (1, 4, 16, 64):
        rows = st.get(("device", s), [])
        if not rows:
            continue
        rate = med([x["per_s"] for x in rows])
        cpu = med([x["kilnd_cpu_ms_per_device"] for x in rows])
        if s == 1:
            base = rows
        eff = med([x["per_s"] / (y["per_s"] * s) for x, y in zip(rows, base or rows)])
        fails = sum(int(x.get("failed", 0)) for x in rows)
        t.row("%2d slots" % s, rate, "dev/s",
              "scaling vs %d x 1 slot %.0f%%; kilnd CPU %.2f ms/dev; session %.0f ms%s"
              % (s, eff * 100, cpu, med([x["session_ms"] for x in rows]),
                 "; %d sessions NOT ok (see stderr)" % fails if fails else ""))
        if s == 1:
            t.target("host CPU <= 2 ms per device", cpu <= 2.0, "%.2f ms (kilnd user+sys)" % cpu)
        if s > 1:
            t.target(">= 90%% scaling at %d slots (vs %d x 1 slot)" % (s, s), eff >= 0.9,
                     "%.0f%%" % (eff * 100))

    t.row("#4. Wire per full session (kilnd counters) and link time from bytes (10 bits/byte)", "")
    for origin in ("device", "host"):
        rows = st.get((origin, 1), [])
        if not rows:
            continue
        tx = med([x["bytes_tx"] for x in rows])
        rx = med([x["bytes_rx"] for x in rows])
        rt = med([x["round_trips"] for x in rows])
        tot = tx + rx
        t.row("%s key origin: bytes (tx + rx)" % origin, tot, "B", "%.0f + %.0f" % (tx, rx))
        t.row("%s key origin: round trips" % origin, rt, "")
        t.row("%s key origin: link time @115200" % origin, tot * 10 / 115200 * 1e3, "ms")
        t.row("%s key origin: link time @921600" % origin, tot * 10 / 921600 * 1e3, "ms")
        t.target("%s: <= 2.5 KiB per session" % origin, tot <= 2560, "%.0f B" % tot)
        t.target("%s: <= 8 round trips" % origin, rt <= 8, "%.0f" % rt)

    qemu = []
    if a.qemu_elf and os.path.exists(a.qemu_elf):
        for r in range(a.runs):
            out = run([station, "-s", "0", "-q", "3", "-Q",
                       os.path.join(ROOT, "scripts", "qemu-board"), "-E", a.qemu_elf,
                       kilnd, sim])
            for line in (out or "").splitlines():
                if line.startswith("qemu"):
                    qemu.append(kv(line[len("qemu "):]))
    if qemu:
        sm = med([x["session_ms"] for x in qemu])
        tot = med([x["bytes_tx"] + x["bytes_rx"] for x in qemu])
        rows = st.get(("device", 1), [])
        sim_ms = med([x["session_ms"] for x in rows]) if rows else float("nan")
        t.row("QEMU board session, measured (device key origin)", sm, "ms",
              "%.0f B; simulator session %.0f ms (host + device compute)" % (tot, sim_ms))
        link = tot * 10 / 115200 * 1e3
        t.row("QEMU: session / simulator session (QEMU link has no baud)", sm / sim_ms, "x")
        t.target("QEMU session within 1.2x of link time + device compute",
                 sm <= 1.2 * sim_ms,
                 "%.0f ms measured vs %.0f ms simulator session (QEMU's UART is not "
                 "paced: the link time @115200 would add %.0f ms)" % (sm, sim_ms, link))
    else:
        t.row("QEMU board session", "n/a", "", "no QEMU firmware built (build-qemu/)")

    # 5: footprint
    t.row("#5. Agent footprint (arm-none-eabi-size; RAM = .data+.bss, stack reserved separately)", "")
    for elf in [e for e in a.boards.split(",") if e]:
        if not os.path.exists(elf):
            t.row(os.path.basename(elf), "missing", "")
            continue
        out = run(["arm-none-eabi-size", elf])
        if not out:
            continue
        text, data, bss = [int(x) for x in out.splitlines()[-1].split()[:3]]
        flash, ram = text + data, data + bss
        t.row(os.path.basename(elf) + ": flash (text+data)", flash, "B", "%.1f KiB" % (flash / 1024))
        t.row(os.path.basename(elf) + ": RAM (.data+.bss)", ram, "B", "%.1f KiB" % (ram / 1024))
        t.target("%s flash <= 48 KiB" % os.path.basename(elf), flash <= 48 * 1024, "%.1f KiB" % (flash / 1024))
        if "qemu" in elf and qemu:
            hwm = med([x["stack_hwm"] for x in qemu])
            heap = med([x["heap_hwm"] for x in qemu])
            need = med([x["static_ram"] for x in qemu]) + hwm
            t.row("qemu: stack high-water / reserved", hwm, "B", "of %d" % med([x["stack_size"] for x in qemu]))
            t.row("qemu: mbedTLS heap high-water / size", heap, "B", "of %d" % med([x["heap_size"] for x in qemu]))
            t.row("qemu: RAM needed (static + stack high-water)", need, "B", "%.1f KiB" % (need / 1024))
            t.target("qemu RAM (static + stack hwm) <= 12 KiB", need <= 12 * 1024, "%.1f KiB" % (need / 1024))
        else:
            t.target("%s RAM (.data+.bss, stack not included) <= 12 KiB" % os.path.basename(elf),
                     ram <= 12 * 1024, "%.1f KiB" % (ram / 1024))

    print("kiln benchmarks (%s, %d runs, %d cores, load avg %.1f at end)"
          % ("full" if a.full else "quick", a.runs, os.cpu_count(), os.getloadavg()[0]))
    t.show()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
