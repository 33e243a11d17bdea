#!/usr/bin/env python3
"""Recipes across rotation seeds: the same recipes quantized from models rotated
with different seeds (scripts/rot_table.sh with ROT_SEED=N), compared per seed
and summarized across seeds.

  scripts/seed_table.py [--chunks 40] [--windows 5] [--json] PREFIX SEEDS BASE LABEL [LABEL ...]

  PREFIX  the rotated model's tag without its seed, e.g. smollm2-135m-rh
          (files in ~/.cache/repliq/quant/PREFIX-sN/, results in
          results/quant-PREFIX-sN-l<chunks>-g<windows>.jsonl)
  SEEDS   comma-separated seeds, e.g. 0,1,2
  BASE    the label every other label is paired against, e.g. gptq-w2pc-sym.n4
  LABEL   the labels to compare (quant_table.sh's labels: recipe name plus .nCALIB)

Per seed: PPL (llamacpp protocol) and the paired per-token NLL difference to
BASE with its standard error (which counts test tokens only). Across seeds: the
mean of those differences and their standard deviation over seeds (which counts
the quantizer's random choices too), over the n seeds that have both runs.
Verdict: "better" or "worse" only when every seed's paired difference lies
beyond two of its standard errors on the same side; otherwise "unresolved". A
missing run, or two runs that scored different tokens, is shown as "-" (with a
warning on stderr) and leaves the label unresolved; no BASE run on any seed is
an error. Environment: REPLIQ_CACHE (default ~/.cache/repliq)."""
import argparse
import json
import os
import sys

from pairing import mean_sd, paired, read_nll as nll, read_results as results, verdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    sys.exit("seed_table: error: " + msg)


def warn(msg):
    print("seed_table: warning: " + msg, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", default="40", help="the .l<CHUNKS>.nll files to read: a count or 'all'")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="one JSON object per label instead of a table")
    ap.add_argument("prefix")
    ap.add_argument("seeds")
    ap.add_argument("base")
    ap.add_argument("labels", nargs="+")
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        die("SEEDS is a comma-separated list of integers, got '%s'" % a.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        die("SEEDS must name each seed once, got '%s'" % a.seeds)
    if a.base in a.labels:
        die("BASE %s is also among the LABELs; list only the labels to pair against it" % a.base)
    cache = os.environ.get("REPLIQ_CACHE") or os.path.expanduser("~/.cache/repliq")

    per = {}  # (seed, label) -> dict
    base_seen = False  # a BASE run (NLL file or result line) on some seed
    for s in seeds:
        tag = "%s-s%d" % (a.prefix, s)
        qdir = os.path.join(cache, "quant", tag)
        res = results(os.path.join(REPO, "results", "quant-%s-l%s-g%d.jsonl" % (tag, a.chunks, a.windows)))
        base = nll(os.path.join(qdir, "%s.l%s.nll" % (a.base, a.chunks)))
        base_seen = base_seen or base is not None or "ppl" in res.get(a.base, {}).get("llamacpp", {})
        if base is None:
            warn("seed %d: no %s.l%s.nll in %s" % (s, a.base, a.chunks, qdir))
        for lab in [a.base] + a.labels:
            e = {}
            r = res.get(lab)
            if r and "llamacpp" in r:
                e["ppl"] = r["llamacpp"]["ppl"]
            x = nll(os.path.join(qdir, "%s.l%s.nll" % (lab, a.chunks)))
            if lab != a.base:
                if x is None:
                    warn("seed %d: no %s.l%s.nll in %s" % (s, lab, a.chunks, qdir))
                elif base is not None:
                    try:
                        e["d"], e["se"] = paired(base, x)
                    except ValueError as err:
                        warn("seed %d: %s against %s: %s; not paired" % (s, lab, a.base, err))
            per[(s, lab)] = e
    if not base_seen:
        die("no run of BASE %s on any seed (prefix %s, chunks %s): check the names" % (a.base, a.prefix, a.chunks))

    out = []
    for lab in a.labels:
        ds = [per[(s, lab)].get("d") for s in seeds]
        ses = [per[(s, lab)].get("se") for s in seeds]
        row = {"label": lab, "base": a.base, "prefix": a.prefix, "seeds": seeds, "chunks": a.chunks,
               "ppl": [per[(s, lab)].get("ppl") for s in seeds],
               "base_ppl": [per[(s, a.base)].get("ppl") for s in seeds], "dnll": ds, "dnll_stderr": ses}
        got = [d for d in ds if d is not None]
        row["n"] = len(got)
        if got:
            row["mean"], row["sd_over_seeds"] = mean_sd(got)
        if len(got) < len(seeds):
            row["verdict"] = "unresolved (missing seed)"
        elif all(verdict(d, se) == "better" for d, se in zip(ds, ses)):
            row["verdict"] = "better on every seed" if len(seeds) > 1 else "better"
        elif all(verdict(d, se) == "worse" for d, se in zip(ds, ses)):
            row["verdict"] = "worse on every seed" if len(seeds) > 1 else "worse"
        else:
            row["verdict"] = "unresolved"
        out.append(row)

    if a.json:
        for row in out:
            print(json.dumps(row))
        return
    f = lambda v, fmt: "-" if v is None else fmt % v
    print("%s, seeds %s, llamacpp protocol ctx 512, %s chunks; paired against %s" %
          (a.prefix, a.seeds, a.chunks, a.base))
    print()
    print("| label | " + " | ".join("seed %d: PPL, ΔNLL ± se" % s for s in seeds) +
          " | n | mean ΔNLL | sd over seeds | verdict |")
    print("|---|" + "---|" * len(seeds) + "---|---|---|---|")
    print("| %s (base) | " % a.base + " | ".join(f(per[(s, a.base)].get("ppl"), "%.1f") for s in seeds) +
          " | | | | |")
    for row in out:
        cells = []
        for s, p, d, se in zip(seeds, row["ppl"], row["dnll"], row["dnll_stderr"]):
            cells.append("%s, %s" % (f(p, "%.1f"), "-" if d is None else "%+.3f ± %.3f" % (d, se)))
        print("| %s | %s | %d | %s | %s | %s |" % (row["label"], " | ".join(cells), row["n"], f(row.get("mean"), "%+.3f"),
                                                   f(row.get("sd_over_seeds"), "%.3f"), row["verdict"]))


if __name__ == "__main__":
    main()
