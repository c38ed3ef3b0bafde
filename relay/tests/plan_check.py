"""Relay planning computed from its definition (README, `relay plan --help`) with Python's own
statistics.median, to check `relay plan --format json` against code we did not write it with.
Reads the RTT CSV on argv[1], prints JSON: pairs {src,dst,direct_ms,relayed_ms,improvement_ms},
improved_fraction and the thresholds' pair counts."""
import csv
import json
import statistics
import sys

samples = {}
with open(sys.argv[1], newline="") as f:
    for row in csv.DictReader(f):
        a, b = sorted((row["src"].strip(), row["dst"].strip()))
        samples.setdefault((a, b), []).append(float(row["rtt_ms"]))
direct = {pair: statistics.median(v) for pair, v in samples.items()}
nodes = sorted({n for pair in direct for n in pair})


def rtt(a, b):
    return direct.get(tuple(sorted((a, b))))


pairs = []
for (a, b), d in sorted(direct.items()):
    via = [rtt(a, r) + rtt(r, b) for r in nodes
           if r not in (a, b) and rtt(a, r) is not None and rtt(r, b) is not None]
    best = min(via) if via else None
    pairs.append({"src": a, "dst": b, "direct_ms": d, "relayed_ms": best,
                  "improvement_ms": None if best is None else d - best})
improved = [p for p in pairs if p["improvement_ms"] is not None and p["improvement_ms"] > 0]
print(json.dumps({
    "pairs": pairs,
    "improved_fraction": len(improved) / len(pairs),
    "thresholds": [sum(1 for p in pairs if p["improvement_ms"] is not None
                       and p["improvement_ms"] >= t) for t in (1, 5, 10, 20, 50, 100)],
}))
