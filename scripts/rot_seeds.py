#!/usr/bin/env python3
"""Two rotation kinds compared over several seeds of each: the same recipe quantized from
models rotated with seeds 0, 1, 2, ... of kind A and of kind B (scripts/rot_table.sh with
ROT_SEED=N), each file's NLL difference to the unrotated reference taken from its result line.

  scripts/rot_seeds.py [--chunks 40] [--windows 5] [--json] MODEL SEEDS LABEL ROT_A ROT_B

  MODEL   e.g. smollm2-135m (results in results/quant-MODEL-ROT-sN-l<chunks>-g<windows>.jsonl)
  SEEDS   comma-separated seeds, at least two, e.g. 0,1,2
  LABEL   quant_table.sh's label, e.g. gptq-w2pc-sym.n4
  ROT_A, ROT_B  rotation names as rot_table.sh writes them, e.g. rh ro

Seed N of A and seed N of B draw unrelated rotations, so the seeds are two independent samples,
not pairs. Per kind: each seed's PPL and ΔNLL against the reference (llamacpp protocol), their
mean and standard deviation over seeds. B − A: the difference of the means with its standard
error from the two spreads over seeds (sqrt(sd_A²/n + sd_B²/n)); B is called better or worse only
beyond two of those standard errors (the quantization-engine issue's rule), and the table says
how many of the n × n seed pairs have B below A. Every seed of both kinds must have a result
line; a missing one is an error naming the file."""
import argparse
import json
import math
import os
import sys

from pairing import mean_sd, read_results, verdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    sys.exit("rot_seeds: error: " + msg)


def row(model, rot, seed, label, chunks, windows):
    path = os.path.join(REPO, "results", "quant-%s-%s-s%d-l%s-g%d.jsonl" % (model, rot, seed, chunks, windows))
    if not os.path.exists(path):
        die("%s not found: run ROT_SEED=%d scripts/rot_table.sh %s %s %d %s ..." % (path, seed, model, chunks, windows,
                                                                                     rot))
    L = read_results(path).get(label, {}).get("llamacpp", {})
    if "dnll" not in L:
        die("no %s line with a llamacpp ΔNLL in %s" % (label, path))
    return {"ppl": L["ppl"], "dnll": L["dnll"], "dnll_stderr": L["dnll_stderr"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", default="40")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ap.add_argument("model")
    ap.add_argument("seeds")
    ap.add_argument("label")
    ap.add_argument("rot_a")
    ap.add_argument("rot_b")
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        die("SEEDS is a comma-separated list of integers, got '%s'" % a.seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        die("SEEDS must name at least two different seeds (a spread needs two), got '%s'" % a.seeds)
    if a.rot_a == a.rot_b:
        die("ROT_A and ROT_B are both '%s'" % a.rot_a)
    n = len(seeds)
    kinds = {}
    for rot in (a.rot_a, a.rot_b):
        per = [row(a.model, rot, s, a.label, a.chunks, a.windows) for s in seeds]
        m, sd = mean_sd([p["dnll"] for p in per])
        kinds[rot] = {"per_seed": per, "mean": m, "sd_over_seeds": sd}
    A, B = kinds[a.rot_a], kinds[a.rot_b]
    diff = B["mean"] - A["mean"]
    se = math.sqrt(A["sd_over_seeds"] ** 2 / n + B["sd_over_seeds"] ** 2 / n)
    below = sum(b["dnll"] < x["dnll"] for b in B["per_seed"] for x in A["per_seed"])
    out = {"model": a.model, "label": a.label, "seeds": seeds, "chunks": a.chunks, "a": a.rot_a, "b": a.rot_b,
           "kinds": kinds, "diff": diff, "diff_stderr": se, "b_below_a_pairs": below, "pairs": n * n,
           "verdict": verdict(diff, se)}
    if a.json:
        print(json.dumps(out))
        return
    print("%s %s, seeds %s, llamacpp protocol ctx 512, %s chunks: ΔNLL against the reference" %
          (a.model, a.label, a.seeds, a.chunks))
    print()
    print("| rotation | " + " | ".join("seed %d: PPL, ΔNLL ± se" % s for s in seeds) + " | mean ΔNLL | sd over seeds |")
    print("|---|" + "---|" * n + "---|---|")
    for rot in (a.rot_a, a.rot_b):
        k = kinds[rot]
        cells = ["%.1f, %+.3f ± %.3f" % (p["ppl"], p["dnll"], p["dnll_stderr"]) for p in k["per_seed"]]
        print("| %s | %s | %+.3f | %.3f |" % (rot, " | ".join(cells), k["mean"], k["sd_over_seeds"]))
    print()
    print("%s − %s: %+.3f ± %.3f over seeds (%s); %s below %s in %d of %d seed pairs" %
          (a.rot_b, a.rot_a, diff, se, out["verdict"], a.rot_b, a.rot_a, below, n * n))


if __name__ == "__main__":
    main()
