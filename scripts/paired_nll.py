#!/usr/bin/env python3
"""Paired comparison of two runs on the same tokens from their per-token NLLs
(repliq ppl --nll-save): mean of B - A with its standard error, and the verdict
of the quantization-engine issue's rule (a difference counts beyond two standard
errors).  usage: scripts/paired_nll.py A.nll B.nll [--json]"""
import json
import sys

from pairing import paired, read_nll, verdict

files = [x for x in sys.argv[1:] if x != "--json"]
if len(files) != 2:
    sys.exit("usage: scripts/paired_nll.py A.nll B.nll [--json]")
runs = []
for f in files:
    r = read_nll(f)
    if r is None:
        sys.exit(f"paired_nll: {f} not found (write it with repliq ppl --nll-save)")
    runs.append(r)
try:
    m, se = paired(*runs)
except ValueError as e:
    sys.exit(f"paired_nll: {e}")
v = {"better": "B better", "worse": "B worse", "n.s.": "no significant difference"}[verdict(m, se)]
if "--json" in sys.argv:
    print(json.dumps({"a": files[0], "b": files[1], "tokens": len(runs[0]), "dnll": m, "dnll_stderr": se,
                      "verdict": v}))
else:
    print(f"B - A: NLL difference {m:+.5f} +/- {se:.5f} over {len(runs[0])} tokens: {v} (2-standard-error rule)")
