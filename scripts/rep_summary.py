#!/usr/bin/env python3
"""The layer-replication table: for each replicated row of the quantization
results (scripts/quant_table.sh, llamacpp protocol), its compute multiplier,
bits per weight, perplexity, KL and NLL difference to the reference, the paired
NLL difference to the per-row GPTQ file at the same bits (same rotation), and
how much of the gap from that file to the next bit width it closes.

  scripts/rep_summary.py CACHE_QUANT_DIR RESULTS.jsonl [CACHE_QUANT_DIR RESULTS.jsonl ...]

CACHE_QUANT_DIR holds the files, their --tensor-log and --nll-save outputs
(~/.cache/repliq/quant/<tag>); the tag names the rotation in the table."""
import json
import os
import re
import sys

from pairing import paired, read_nll as nll, read_results, verdict


def pair_runs(qdir, chunks, a_label, b_label):
    """paired ΔNLL (b − a) ± se of two runs from their --nll-save files; None when a file is
    missing, or (with a warning) when they score different numbers of tokens"""
    a = nll(os.path.join(qdir, f"{a_label}.l{chunks}.nll"))
    b = nll(os.path.join(qdir, f"{b_label}.l{chunks}.nll"))
    if not (a and b):
        return None
    try:
        return paired(a, b)
    except ValueError as e:
        print(f"rep_summary: warning: {b_label} against {a_label} in {qdir}: {e}; not paired", file=sys.stderr)
        return None


def compute_multiplier(qdir, label, k):
    log = os.path.join(qdir, label.split("@")[0] + ".tensors.jsonl")
    if os.path.exists(log):
        ts = [json.loads(x) for x in open(log)]
        macs = sum(t["rows"] * t["cols"] for t in ts)
        return sum(t["rows"] * t["cols"] * max(t["k"], 1) for t in ts) / macs
    return float(k)


print("| rotation | bits | K | calib. tokens | compute × | bpw (linear) | PPL | KL | ΔNLL vs ref ± se | ΔNLL vs per-row GPTQ ± se "
      "(paired) | ΔNLL vs K=1 ± se (paired) | gap to next bit width closed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
args = sys.argv[1:]
for qdir, res in zip(args[::2], args[1::2]):
    rows = read_results(res)
    tag = os.path.basename(qdir.rstrip("/"))
    rot = "RH" if "-rh-" in tag else "RO" if "-ro-" in tag else "DFRot" if "-dfrot-" in tag else "none"
    for label, r in rows.items():
        m = re.match(r"(rep-w(?P<rb>\d)-(k(?P<k>\d+)(?P<var>-rows|-i\d+|-mt|-mlp|-rot-mt|-rot)?|adapt[\w-]*)|gptq-w(?P<gb>\d)pc-sym)"
                     r"(?P<ts>-ts)?(?P<tgt>-block|-model)?(?P<ext>-lite|-nofit|-oproj)?(?P<rs>-s\d+)?(?P<n>\.n\d+)?$", label)
        if not m:
            continue
        ts = m.group("ts") or ""
        if m.group("gb"):
            bits, k, name = int(m.group("gb")), 0, "per-row GPTQ"
        else:
            bits = int(m.group("rb"))
            k = int(m.group("k")) if m.group("k") else -1
            target = {"-block": ", block target", "-model": ", model target"}.get(m.group("tgt"), "")
            target += {"-lite": ", lite: 1 alternation, 30 steps of 256",
                       "-nofit": ", no alternation, 30 steps of 256",
                       "-oproj": ", with attn_output"}.get(m.group("ext"), "")
            var = {"-rows": " (row factors only)", "-rot": " (rotation ensemble)",
                   "-rot-mt": f" (rotation ensemble, MLP: summed, trained{target})",
                   "-mt": f" (MLP: summed, trained{target})",
                   "-mlp": f" (MLP: paths, trained{target})", None: ""}.get(m.group("var"),
                                                                          f" ({(m.group('var') or '')[2:]} rounds)")
            if m.group("rs"):
                var = var[:-1] + f", seed {m.group('rs')[2:]})"
            name = f"{k}{var}" if k > 0 else "adaptive"
            if k < 0:  # rep-wB-adapt2x[-kDIGITS][-acts]-MODEL-ROT: the K set, one digit per K
                ks = re.search(r"-k(\d+)-", label)
                extra = [f"K ∈ {{{', '.join(ks.group(1))}}}"] if ks else []
                extra += ["gains weighted by input outliers"] if "-acts-" in label else []
                name += f" ({', '.join(extra)})" if extra else ""
        if ts:
            name += " [true-seq.]"
        sfx = m.group("n") or ""
        L = r["llamacpp"]
        # per-row GPTQ with the same input collection; one bit up, that or the default's
        base = rows.get(f"gptq-w{bits}pc-sym{ts}{sfx}")
        nxt = rows.get(f"gptq-w{bits + 1}pc-sym{ts}{sfx}") or rows.get(f"gptq-w{bits + 1}pc-sym{sfx}")
        def pair_with(other):
            if not other or label == other["label"]:
                return "—"
            p = pair_runs(qdir, L["chunks"], other["label"], label)
            if p is None:
                return "—"
            d, se = p
            return f"{d:+.4f} ± {se:.4f} ({verdict(d, se)})"

        pair = pair_with(base)
        pair1 = pair_with(rows.get(f"rep-w{bits}-k1{ts}{sfx}")) if k != 0 else "—"
        gap = "—"
        if base and nxt and label != base["label"] and base["llamacpp"]["dnll"] > nxt["llamacpp"]["dnll"]:
            g = (base["llamacpp"]["dnll"] - L["dnll"]) / (base["llamacpp"]["dnll"] - nxt["llamacpp"]["dnll"])
            gap = f"{100 * g:.1f}%"
        cm = 1.0 if k == 0 else compute_multiplier(qdir, label, k)
        print(f'| {rot} | W{bits} | {name} | {r["quant"]["calib_tokens"]} | {cm:.2f} | {r["quant"]["linear"]["bpw"]:.4f} | {L["ppl"]:.3f} | '
              f'{L["kl"]:.4f} | {L["dnll"]:+.4f} ± {L["dnll_stderr"]:.4f} | {pair} | {pair1} | {gap} |')
# the trained MLPs (recipes rep-w*-k*-mt / -mlp) against each other: training alone
# (K=1 trained vs K=1), summed vs paths at equal K, and K paths vs one trained decoder;
# true-sequential (-ts) against the default, and the block / model targets against the MLP's
pairs_done = False
for qdir, res in zip(args[::2], args[1::2]):
    rows = read_results(res)
    for label in rows:
        t = re.match(r"gptq-w(\d)pc-sym-ts(\.n\d+)?$", label)  # true-sequential against the default
        rot = re.match(r"rep-w(\d)-k(\d+)-rot(-s\d+)?(\.n\d+)?$", label)  # a rotation ensemble against factor replicas
        rotmt = re.match(r"rep-w(\d)-k(\d+)-rot-mt(-ts)?(-block|-model)?(\.n\d+)?$", label)
        m = re.match(r"rep-w(\d)-k(\d+)-(mt|mlp)(-ts)?(-block|-model)?(-lite|-nofit|-oproj)?(\.n\d+)?$", label)
        if t:
            others = [f"gptq-w{t.group(1)}pc-sym{t.group(2) or ''}"]
        elif rotmt:  # trained: against the untrained ensemble and the trained K = 1
            b, k, ts, tgt, sfx = (rotmt.group(1), rotmt.group(2), rotmt.group(3) or "", rotmt.group(4) or "",
                                  rotmt.group(5) or "")
            others = [f"rep-w{b}-k{k}-rot{sfx}", f"rep-w{b}-k1-mt{ts}{tgt}{sfx}", f"gptq-w{b}pc-sym{ts}{sfx}"]
        elif rot:  # and against K = 1, and a second seed against the first
            b, k, rs, sfx = rot.group(1), rot.group(2), rot.group(3), rot.group(4) or ""
            others = [f"rep-w{b}-k{k}{sfx}", f"rep-w{b}-k1{sfx}"] + ([f"rep-w{b}-k{k}-rot{sfx}"] if rs else [])
        elif not m:
            continue
        else:
            b, k, kind, ts, tgt, ext, sfx = (m.group(1), m.group(2), m.group(3), m.group(4), m.group(5), m.group(6),
                                             m.group(7) or "")
            if ext:  # the lite or o_proj variant against the plain target, and per-row GPTQ
                others = [f"rep-w{b}-k{k}-{kind}{ts or ''}{tgt or ''}{sfx}", f"gptq-w{b}pc-sym{ts or ''}{sfx}"]
            elif tgt:  # a block or model target against the MLP's, and model against block
                others = [f"rep-w{b}-k{k}-{kind}{ts or ''}{sfx}"]
                if tgt == "-model":
                    others.append(f"rep-w{b}-k{k}-{kind}{ts or ''}-block{sfx}")
                # and where those were not run: the default trained MLP, the fit alone, per-row GPTQ
                others += [f"rep-w{b}-k{k}-{kind}{sfx}", f"rep-w{b}-k{k}{sfx}", f"gptq-w{b}pc-sym{ts or ''}{sfx}"]
            elif ts:  # true-sequential against the default
                others = [f"rep-w{b}-k{k}-{kind}{sfx}", f"gptq-w{b}pc-sym-ts{sfx}"]
            else:
                others = [f"rep-w{b}-k{k}{sfx}"] if kind == "mt" and k == "1" else []
                if kind == "mlp":
                    others += [f"rep-w{b}-k{k}-mt{sfx}", f"rep-w{b}-k1-mt{sfx}"]
                elif k != "1":
                    others += [f"rep-w{b}-k1-mt{sfx}"]
        for o in others:
            if o not in rows:
                continue
            L = rows[label]["llamacpp"]
            p = pair_runs(qdir, L["chunks"], o, label)
            if p is None:
                continue
            d, se = p
            if not pairs_done:
                print("\nPaired per-token NLL differences among the trained MLPs, true-sequential files and rotation "
                      "ensembles:\n")
                pairs_done = True
            print(f"- {os.path.basename(qdir.rstrip('/'))}: {label} − {o}: {d:+.4f} ± {se:.4f} ({verdict(d, se)})")
first = next(iter(load_rows(args[1]).values()))
print(f'\nWikiText-2 test, llamacpp protocol: {first["llamacpp"]["chunks"]} chunks of {first["llamacpp"]["ctx"]} '
      f'({first["llamacpp"]["tokens"]} scored tokens); reference = the packaged model dequantized to f32; '
      f'C4 calibration, seed 0; machine: {first["machine"]}.')
