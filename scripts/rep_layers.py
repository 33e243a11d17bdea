#!/usr/bin/env python3
"""Per layer type, the mean relative layer error ||(W'-W)X||^2/||WX||^2 on the
calibration inputs of a replicated run's per-tensor log (repliq quantize
--tensor-log): at the per-row GPTQ start of the fit, at its end, and their ratio.
  scripts/rep_layers.py LOG.tensors.jsonl"""
import json
import sys

by = {}
for line in open(sys.argv[1]):
    t = json.loads(line)
    by.setdefault(t["name"].split(".")[2], []).append(t)
print("| layer | K | mean rel. error, per-row GPTQ start | mean rel. error, fit | ratio |\n|---|---|---|---|---|")
for name, ts in by.items():
    s = sum(t["rel_err_start"] for t in ts) / len(ts)
    e = sum(t["rel_err"] for t in ts) / len(ts)
    print(f"| {name} | {ts[0]['k']} | {s:.4f} | {e:.4f} | {e / s:.3f} |")
