"""What a long-lived server's ledger costs: a ledger of N messages (lines as serve writes
them, with digest and nonce), opened by a fresh process three times: the first start
indexes every line (a ledger from a server that kept no index), a later one only the lines
added since (none), and one after 1,000 lines appended by another; and, for comparison,
what every start did before the index (the text read whole into a dict). Each start's
time and its process's peak memory, and a lookup's time.

    python benchmarks/ledger_scale.py [--messages 1000000] [--out benchmarks/results]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from walloc_edge.bench import machine
from report import publish

WHOLE = """
import json, resource, sys, time
import walloc_edge.server.delivery  # (the same modules loaded as the other starts)
# what the ledger did at each start before it kept an index (walloc-edge 5da210e): the text
# read whole into a dict of every key, and one of every boot
t0 = time.perf_counter()
done, boots = {}, {}
data = open(sys.argv[1], "rb").read()
for line in data[:data.rfind(b"\\n") + 1].decode(errors="replace").splitlines():
    fields = line.split()
    if fields:
        known = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        done[fields[0]] = (known.get("digest"), known.get("nonce"))
        if known.get("nonce") is not None:
            boots.setdefault(fields[0].rsplit("-", 1)[0], known["nonce"])
start = time.perf_counter() - t0
print(json.dumps({"start_s": start, "lookup_us": 0.0, "found": len(done),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD = """
import json, resource, sys, time
from walloc_edge.server.delivery import Ledger
t0 = time.perf_counter()
ledger = Ledger(sys.argv[1])
start = time.perf_counter() - t0
n = int(sys.argv[2])
t0 = time.perf_counter()
found = sum(f"{k % 977:016x}-{k % 13}-{k}" in ledger for k in range(0, n, max(1, n // 20000)))
lookup = (time.perf_counter() - t0) / max(1, min(n, 20000))
ledger.close()
print(json.dumps({"start_s": start, "lookup_us": lookup * 1e6, "found": found,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def line(k):
    return (f"{k % 977:016x}-{k % 13}-{k} cam-{k % 977:016x}-{k % 13}-{k:06d}.png "
            f"digest={k:032x} nonce={k % 13:032x}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--out")
    args = p.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.txt"
        with open(path, "w") as f:
            f.writelines(line(k) for k in range(n))
        size = path.stat().st_size
        idle = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(Path(folder) /
                                          "empty.txt"), "0"], capture_output=True, text=True,
                                         check=True).stdout)

        def start(child=CHILD):
            done = subprocess.run([sys.executable, "-c", child, str(path), str(n)],
                                  capture_output=True, text=True, check=True)
            return json.loads(done.stdout)

        whole = start(WHOLE)
        first, later = start(), start()
        with open(path, "a") as f:
            f.writelines(line(k) for k in range(n, n + 1000))
        appended = start()
        index = path.with_name("ledger.txt.index").stat().st_size
    m = machine()
    lines = [f"A ledger of {n:,} messages ({size / 1e6:.0f} MB of text; its index "
             f"{index / 1e6:.0f} MB) opened by a fresh process ({m['cpu']}, {m['cores']} "
             f"cores); peak memory is the whole process's (an empty ledger: "
             f"{idle['peak_mb']:.0f} MB)", "",
             "| start | seconds | peak memory (MB) | lookup (µs) |", "|---|---|---|---|"]
    rows = {"before the index: every start reads it whole": whole,
            "first (indexes every line)": first, "later (nothing new)": later,
            "after 1,000 lines appended": appended}
    for name, r in rows.items():
        assert r["found"] > 0
        lookup = f"{r['lookup_us']:.1f}" if r["lookup_us"] else "(a dict)"
        lines.append(f"| {name} | {r['start_s']:.3f} | {r['peak_mb']:.0f} | {lookup} |")
    publish(lines, {"machine": m, "messages": n, "text_bytes": size, "index_bytes": index,
                    "empty_peak_mb": idle["peak_mb"], "starts": rows}, args.out,
            "ledger_scale")


if __name__ == "__main__":
    main()
