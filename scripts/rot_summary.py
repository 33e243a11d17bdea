#!/usr/bin/env python3
"""Rotation x configuration table from scripts/rot_table.sh's results: one row per
configuration, one column per rotation, each cell the llamacpp-protocol PPL and the
paired NLL difference to the reference (± its standard error).
    scripts/rot_summary.py MODEL CHUNKS WINDOWS ROT...   (ROT: none, rh, ro, dfrot, ...)"""
import json
import os
import sys

model, chunks, windows, rots = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
cols, order = {}, []
for rot in rots:
    tag = model if rot == "none" else f"{model}-{rot}-s0"
    path = f"results/quant-{tag}-l{chunks}-g{windows}.jsonl"
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            if "pc-sym" not in r["label"]:
                continue
            rows[r["label"]] = r
            if r["label"] not in order:
                order.append(r["label"])
    cols[rot] = rows
print("| config | bpw | " + " | ".join(f"{r}: PPL (ΔNLL ± se)" for r in rots) + " |")
print("|---|---|" + "---|" * len(rots))
for label in order:
    bpw = next(c[label]["quant"]["linear"]["bpw"] for c in cols.values() if label in c)
    cells = []
    for rot in rots:
        r = cols[rot].get(label)
        if not r:
            cells.append("—")
            continue
        p = r["llamacpp"]
        cells.append(f'{p["ppl"]:.2f} ({p["dnll"]:+.3f} ± {p["dnll_stderr"]:.3f})')
    print(f"| {label} | {bpw:.4f} | " + " | ".join(cells) + " |")
