#!/usr/bin/env python3
"""Paired comparison of two runs on the same tokens from their per-token NLLs
(repliq ppl --nll-save): mean of B - A with its standard error, and the verdict
of the quantization-engine issue's rule (a difference counts beyond two standard
errors).  usage: scripts/paired_nll.py A.nll B.nll [--json]"""
import json
import math
import sys

a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
if len(a) != len(b) or not a:
    sys.exit(f"paired_nll: {len(a)} and {len(b)} tokens: the runs must score the same tokens")
d = [y - x for x, y in zip(a, b)]
n = len(d)
m = sum(d) / n
se = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
verdict = "B better" if m < -2 * se else "B worse" if m > 2 * se else "no significant difference"
if "--json" in sys.argv:
    print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "tokens": n, "dnll": m, "dnll_stderr": se,
                      "verdict": verdict}))
else:
    print(f"B - A: NLL difference {m:+.5f} +/- {se:.5f} over {n} tokens: {verdict} (2-standard-error rule)")
