#!/usr/bin/env python3
"""Choose the number of replicas per linear layer under a compute budget, from
per-tensor logs of uniform runs (repliq quantize --tensor-log), and write a
recipe that sets each tensor's K by an override.

  scripts/rep_adaptive.py BASE_RECIPE BUDGET OUT_RECIPE LOG_K1 LOG_K2 ...

Each log holds one JSON line per tensor with its K and relative layer error
||(W'-W)X||^2/||WX||^2. A layer starts at the smallest K logged; the greedy step
moves the layer whose next logged K buys the largest drop in relative error per
extra multiply-add (rows*cols*(K'-K)), while the total multiply-adds stay within
BUDGET times those of K=1 everywhere. A move that buys nothing is never taken,
so layers where replication does not help keep the smallest K."""
import json
import sys

base_path, budget, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
logs = {}
for path in sys.argv[4:]:
    for line in open(path):
        t = json.loads(line)
        logs.setdefault(t["name"], {})[t["k"]] = t
names = sorted(logs)
ks = sorted({k for v in logs.values() for k in v})
for n in names:
    if sorted(logs[n]) != ks:
        sys.exit(f"rep_adaptive: {n} is not in every log (has K {sorted(logs[n])}, want {ks})")
macs = {n: logs[n][ks[0]]["rows"] * logs[n][ks[0]]["cols"] for n in names}
total1 = sum(macs.values())
choice = {n: ks[0] for n in names}
used = sum(macs[n] * ks[0] for n in names)
while True:
    best = None
    for n in names:
        i = ks.index(choice[n])
        if i + 1 == len(ks):
            continue
        k2 = ks[i + 1]
        gain = logs[n][choice[n]]["rel_err"] - logs[n][k2]["rel_err"]
        cost = macs[n] * (k2 - choice[n])
        if gain <= 0 or used + cost > budget * total1:
            continue
        if best is None or gain / cost > best[0]:
            best = (gain / cost, n, k2, cost)
    if best is None:
        break
    choice[best[1]] = best[2]
    used += best[3]

recipe = json.load(open(base_path))
name = out_path.rsplit("/", 1)[-1].removesuffix(".json")
recipe["name"] = name
recipe["replicate"] = dict(recipe.get("replicate") or {}, k=ks[0])
recipe["overrides"] = [{"pattern": n, "replicate": dict(recipe["replicate"], k=choice[n])}
                       for n in names if choice[n] != ks[0]]
with open(out_path, "w") as f:
    json.dump(recipe, f, indent=2)
    f.write("\n")
counts = {k: sum(1 for n in names if choice[n] == k) for k in ks}
print(f"rep_adaptive: {name}: compute {used / total1:.3f}x of K=1 (budget {budget}x); layers per K: {counts}")
by_type = {}
for n in names:
    t = n.split(".")[2]
    by_type.setdefault(t, []).append(choice[n])
for t, v in sorted(by_type.items()):
    print(f"  {t:12s} K: {' '.join(str(x) for x in v)}")
