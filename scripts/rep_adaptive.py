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
so layers where replication does not help keep the smallest K.

  --acts ACTS.json [--acts-power P]  (before the positional arguments)
weights each layer's gain by the massive-activation statistics of its input
(repliq inspect acts --json on the same model): w = (r / median r)^P, where r is
max|x| / median|x| at the layer's input site (attn_in for q/k/v, o_in for
attn_output, ffn_in for gate/up, down_in for ffn_down) and the median is over the
layers at that site; P defaults to 1. Layers fed unusually outlying inputs get
their extra replicas first."""
import json
import math
import statistics
import sys

SITE = {"attn_q": "attn_in", "attn_k": "attn_in", "attn_v": "attn_in", "attn_output": "o_in",
        "ffn_gate": "ffn_in", "ffn_up": "ffn_in", "ffn_down": "down_in"}


def acts_weights(path, power, names):
    """Per tensor name, (r / median r over layers at its site) ** power."""
    d = json.load(open(path))
    ratio = {(e["layer"], site): e[site]["ratio"] for e in d["layers"] for site in set(SITE.values())}
    bad = [k for k, v in ratio.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    if bad:  # acts.c writes null for an infinite ratio (a site whose median |x| is 0)
        sys.exit(f"rep_adaptive: {path}: layer {bad[0][0]} {bad[0][1]} has ratio {ratio[bad[0]]}; "
                 "need a finite ratio > 0 at every site")
    med = {site: statistics.median(v for (_, s), v in ratio.items() if s == site) for site in set(SITE.values())}
    w = {}
    for n in names:
        parts = n.split(".")  # blk.L.kind.weight
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in SITE:
            sys.exit(f"rep_adaptive: cannot place tensor {n} at an activation site")
        site = SITE[parts[2]]
        key = (int(parts[1]), site)
        if key not in ratio:
            sys.exit(f"rep_adaptive: {path} has no layer {parts[1]} (tensor {n})")
        w[n] = (ratio[key] / med[site]) ** power
    return w


args = sys.argv[1:]
acts_path, power = None, 1.0
while args and args[0].startswith("--"):
    if args[0] == "--acts" and len(args) > 1:
        acts_path, args = args[1], args[2:]
    elif args[0] == "--acts-power" and len(args) > 1:
        power, args = float(args[1]), args[2:]
    else:
        sys.exit(f"rep_adaptive: unknown option {args[0]} (--acts FILE, --acts-power P)")
if not math.isfinite(power) or (power != 1.0 and not acts_path):
    sys.exit("rep_adaptive: --acts-power needs a finite number and --acts")
if len(args) < 4:
    sys.exit("usage: scripts/rep_adaptive.py [--acts ACTS.json [--acts-power P]] BASE_RECIPE BUDGET OUT_RECIPE LOG...")
base_path, budget, out_path = args[0], float(args[1]), args[2]
logs = {}
for path in args[3:]:
    for line in open(path):
        t = json.loads(line)
        logs.setdefault(t["name"], {})[t["k"]] = t
names = sorted(logs)
ks = sorted({k for v in logs.values() for k in v})
for n in names:
    if sorted(logs[n]) != ks:
        sys.exit(f"rep_adaptive: {n} is not in every log (has K {sorted(logs[n])}, want {ks})")
macs = {n: logs[n][ks[0]]["rows"] * logs[n][ks[0]]["cols"] for n in names}
weight = acts_weights(acts_path, power, names) if acts_path else {n: 1.0 for n in names}
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
        gain = (logs[n][choice[n]]["rel_err"] - logs[n][k2]["rel_err"]) * weight[n]
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
text = json.dumps(recipe, indent=2) + "\n"
try:
    same = open(out_path).read() == text
except FileNotFoundError:
    same = False
if not same:  # an unchanged recipe keeps its mtime, so quant_table.sh does not quantize again
    with open(out_path, "w") as f:
        f.write(text)
counts = {k: sum(1 for n in names if choice[n] == k) for k in ks}
print(f"rep_adaptive: {name}: compute {used / total1:.3f}x of K=1 (budget {budget}x); layers per K: {counts}"
      + (f"; gains weighted by {acts_path} (power {power})" if acts_path else ""))
by_type = {}
for n in sorted(names, key=lambda n: (n.split(".")[2], int(n.split(".")[1]))):  # layer order, not text order
    by_type.setdefault(n.split(".")[2], []).append(choice[n])
print("  K per layer, from layer 0:")
for t, v in sorted(by_type.items()):
    print(f"  {t:12s} K: {' '.join(str(x) for x in v)}")
