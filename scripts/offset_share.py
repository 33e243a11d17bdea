#!/usr/bin/env python3
"""Two `repliq inspect layers --json` files, tensor by tensor: the share of each
layer's error that is one offset on every token (mean_share), per layer type,
and in how many tensors B's share and B's offset energy (share x relative error)
are above A's.
  scripts/offset_share.py A.jsonl B.jsonl"""
import statistics
import sys

import layerrec


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    a, b = (layerrec.load(p, "offset_share", ("mean_share", "rel_err")) for p in sys.argv[1:3])
    common = [k for k in a if k in b and a[k][0] > 0 and a[k][1] > 0]
    if not common:
        sys.exit("offset_share: no tensor with an error in both files")
    by = {}
    for k in common:
        by.setdefault(layerrec.layer_type(k), []).append(k)
    print("| layer type | tensors | mean share A | mean share B | B's share higher in | median B/A offset energy |")
    print("|---|---|---|---|---|---|")
    for typ, ks in list(by.items()) + [("all", common)]:
        sa = sum(a[k][0] for k in ks) / len(ks)
        sb = sum(b[k][0] for k in ks) / len(ks)
        hi = sum(b[k][0] > a[k][0] for k in ks)
        en = statistics.median(b[k][0] * b[k][1] / (a[k][0] * a[k][1]) for k in ks)
        print(f"| {typ} | {len(ks)} | {sa:.4f} | {sb:.4f} | {hi} of {len(ks)} | {en:.3f} |")


if __name__ == "__main__":
    main()
