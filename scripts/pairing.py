"""The paired per-token comparison shared by paired_nll.py, rep_summary.py, seed_table.py and
rot_seeds.py, and the reading of quant_table.sh's result lines.

Two runs that score the same tokens (repliq ppl --nll-save) are compared by the mean of their
per-token NLL differences and its standard error; the quantization-engine issue's rule calls one
run better or worse only when that mean is beyond two standard errors."""
import json
import math
import os


def read_nll(path):
    """per-token NLLs of a --nll-save file, or None when the file does not exist"""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [float(x) for x in f]


def read_results(path):
    """quant_table.sh's result lines by label, the last line of a label winning (as in
    quant_table.py); {} when the file does not exist"""
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[r["label"]] = r
    return rows


def paired(a, b):
    """mean and standard error of b - a per token; ValueError unless both score the same number
    of tokens, at least two"""
    if len(a) != len(b):
        raise ValueError("%d and %d tokens: the runs must score the same tokens" % (len(a), len(b)))
    if len(a) < 2:
        raise ValueError("%d tokens: a standard error needs at least two" % len(a))
    n = len(a)
    d = [y - x for x, y in zip(a, b)]
    m = sum(d) / n
    return m, math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1) / n)


def mean_sd(xs):
    """mean of xs and their sample standard deviation (None for a single value)"""
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None)


def verdict(d, se):
    """'better' (b below a), 'worse' or 'n.s.' by the two-standard-error rule"""
    if d < -2 * se:
        return "better"
    if d > 2 * se:
        return "worse"
    return "n.s."
