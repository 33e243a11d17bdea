#!/usr/bin/env python3
"""Two files' relative layer errors ||(W'-W)X||^2/||WX||^2, tensor by tensor: per
layer type, the mean of each, the median of B/A and in how many layers B is lower.
Reads `repliq inspect layers --json` output or a quantize per-tensor log
(`*.tensors.jsonl`); tensors present in only one file are left out and counted.
  scripts/layer_compare.py A.jsonl B.jsonl [--label-a NAME] [--label-b NAME]"""
import argparse
import statistics
import sys

import layerrec


def load(path):
    out = {k: v[0] for k, v in layerrec.load(path, "layer_compare", ("rel_err",)).items() if v[0] >= 0}
    if not out:  # -1: measured without calibration inputs
        sys.exit(f"layer_compare: {path} holds no layer errors")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--label-a", default="A")
    ap.add_argument("--label-b", default="B")
    o = ap.parse_args()
    a, b = load(o.a), load(o.b)
    common = [k for k in a if k in b]
    if not common:
        sys.exit("layer_compare: the two files share no tensor names")
    by = {}
    for k in common:
        by.setdefault(layerrec.layer_type(k), []).append(k)
    la, lb = o.label_a, o.label_b
    print(f"| layer type | tensors | mean {la} | mean {lb} | median {lb}/{la} | {lb} lower in |")
    print("|---|---|---|---|---|---|")
    lower_all = 0
    for typ, ks in by.items():
        ma = sum(a[k] for k in ks) / len(ks)
        mb = sum(b[k] for k in ks) / len(ks)
        pos = [b[k] / a[k] for k in ks if a[k] > 0]
        med = f"{statistics.median(pos):.3f}" if pos else "—"
        lower = sum(b[k] < a[k] for k in ks)
        lower_all += lower
        print(f"| {typ} | {len(ks)} | {ma:.5f} | {mb:.5f} | {med} | {lower} of {len(ks)} |")
    ratios = [b[k] / a[k] for k in common if a[k] > 0]
    med = f"{statistics.median(ratios):.3f}" if ratios else "—"
    print(f"| all | {len(common)} | | | {med} | {lower_all} of {len(common)} |")
    only = len(a) + len(b) - 2 * len(common)
    if only:
        print(f"({only} tensors in only one file left out)")


if __name__ == "__main__":
    main()
