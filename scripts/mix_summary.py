#!/usr/bin/env python3
"""The two steps of scripts/mix_table.sh after each evaluation.

  mix_summary.py row NAME PATTERNS A.gguf B.gguf MIX.gguf MIX.nll PPL_JSON RUN
      one JSON line: the mix, its repliq ppl --json result, and its paired per-token NLL
      difference with A and with B (their NLLs beside them as NAME.RUN.nll; RUN is lCHUNKS for
      the test text, valid-lCHUNKS for the validation text)
  mix_summary.py table RESULTS.jsonl A.gguf B.gguf RUN
      B - A, then a markdown row per mix (the last line of each name): PPL, KL, mix - A,
      mix - B, and the share of B - A that the mix recovers ((mix - A) / (B - A))"""
import json
import sys

from pairing import paired, read_nll, verdict


def nll_of(gguf, run):
    path = gguf[: -len(".gguf")] + ".%s.nll" % run if gguf.endswith(".gguf") else gguf
    r = read_nll(path)
    if r is None:
        sys.exit("mix_summary: %s not found (quant_table.sh or mix_table.sh with the same CHUNKS writes it)" % path)
    return r


def pair(a, b):
    m, se = paired(a, b)
    return {"dnll": m, "dnll_stderr": se, "verdict": verdict(m, se)}


def row(name, pats, a, b, mix, nll, ppl_json, run):
    mine = read_nll(nll)
    if mine is None:
        sys.exit("mix_summary: %s not found" % nll)
    r = {"name": name, "from_b": pats, "a": a, "b": b, "file": mix, "llamacpp": json.loads(ppl_json)}
    r["vs_a"] = pair(nll_of(a, run), mine)
    r["vs_b"] = pair(nll_of(b, run), mine)
    print(json.dumps(r))


def share(part, whole):
    return "—" if whole == 0 else "%.0f%%" % (100 * part / whole)


def table(res, a, b, run):
    rows = {}
    with open(res) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r["a"] == a and r["b"] == b:
                    rows[r["name"]] = r
    d = pair(nll_of(a, run), nll_of(b, run))
    print("A = %s\nB = %s\nB - A: %+.4f ± %.4f (%s)\n" % (a, b, d["dnll"], d["dnll_stderr"], d["verdict"]))
    print("| taken from B | PPL | KL | mix − A ± se (paired) | mix − B ± se (paired) | share of B − A |")
    print("|---|---|---|---|---|---|")
    for r in rows.values():
        p, va, vb = r["llamacpp"], r["vs_a"], r["vs_b"]
        print("| %s (`%s`) | %.3f | %.4f | %+.4f ± %.4f (%s) | %+.4f ± %.4f (%s) | %s |" % (
            r["name"], r["from_b"], p["ppl"], p["kl"], va["dnll"], va["dnll_stderr"], va["verdict"], vb["dnll"],
            vb["dnll_stderr"], vb["verdict"], share(va["dnll"], d["dnll"])))


if __name__ == "__main__":
    if len(sys.argv) == 10 and sys.argv[1] == "row":
        row(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "table":
        table(*sys.argv[2:])
    else:
        sys.exit(__doc__)
