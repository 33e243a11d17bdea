#!/usr/bin/env bash
# The analysis scripts on made-up runs whose answers are known: scripts/paired_nll.py and
# scripts/seed_table.py read per-token NLL files and result lines from a temporary cache.
set -u
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
command -v python3 >/dev/null || { echo "SKIP test_paired_nll: no python3"; echo "SKIP test_seed_table: no python3"; exit 0; }

# nll FILE BASE STEP: 200 tokens, token i scores BASE + STEP * (i mod 2) (so the mean difference
# of two such files is known and its standard error is not zero)
nll() { python3 -c 'import sys; b, s = float(sys.argv[2]), float(sys.argv[3])
open(sys.argv[1], "w").write("".join("%r\n" % (b + s * (i % 2)) for i in range(200)))' "$@"; }

# paired_nll: B - A = 0.5 + 0.05 (i mod 2): mean 0.525, se = 0.025 / sqrt(200)
nll "$tmp/a.nll" 3.0 0.0
nll "$tmp/b.nll" 3.5 0.05
out=$(python3 "$repo/scripts/paired_nll.py" "$tmp/a.nll" "$tmp/b.nll" --json)
if python3 -c 'import json, math, sys; j = json.loads(sys.argv[1])
se = math.sqrt(0.025**2 * 200 / 199 / 200)
sys.exit(not (j["tokens"] == 200 and abs(j["dnll"] - 0.525) < 1e-12 and abs(j["dnll_stderr"] - se) < 1e-12
              and j["verdict"] == "B worse"))' "$out"; then pass test_paired_nll
else fail test_paired_nll "got $out"; fi

# seed_table: base and two labels on seeds 0 and 1 under REPLIQ_CACHE=$tmp; results lines come
# from the repository's results folder, so the script is run from a copy of scripts/.
mkdir -p "$tmp/repo/scripts" "$tmp/repo/results"
cp "$repo/scripts/seed_table.py" "$repo/scripts/pairing.py" "$tmp/repo/scripts/"
for s in 0 1; do
    d=$tmp/quant/m-rh-s$s
    mkdir -p "$d"
    nll "$d/base.n4.l40.nll" 5.0 0.1
    # "good": lower on both seeds by 0.29 and 0.09; "mixed": -0.2 on seed 0, +0.2 on seed 1;
    # "bad": +0.3 on both; "close": -0.29 on seed 0, and on seed 1 a difference of
    # -1.05 + 2.0 (i mod 2), mean -0.05 with standard error 0.0709, so within two of them;
    # "half": run on seed 0 only
    nll "$d/good.n4.l40.nll" "$(python3 -c "print(5.0 - (0.3 if $s == 0 else 0.1))")" 0.12
    nll "$d/mixed.n4.l40.nll" "$(python3 -c "print(5.0 + (-0.2 if $s == 0 else 0.2))")" 0.1
    nll "$d/bad.n4.l40.nll" 5.3 0.1
    if [ $s = 0 ]; then nll "$d/close.n4.l40.nll" 4.7 0.12; else nll "$d/close.n4.l40.nll" 3.95 2.1; fi
    [ $s = 0 ] && nll "$d/half.n4.l40.nll" 4.0 0.1
    for l in base good mixed; do
        echo "{\"label\": \"$l.n4\", \"llamacpp\": {\"ppl\": $((100 + s)), \"dnll\": 0.5}}"
    done > "$tmp/repo/results/quant-m-rh-s$s-l40-g5.jsonl"
done
out=$(REPLIQ_CACHE=$tmp python3 "$tmp/repo/scripts/seed_table.py" --json m-rh 0,1 base.n4 good.n4 mixed.n4 bad.n4 close.n4 \
    half.n4 missing.n4 2>/dev/null)
if python3 -c 'import json, math, sys
rows = {r["label"]: r for r in map(json.loads, sys.argv[1].splitlines())}
g, m, x = rows["good.n4"], rows["mixed.n4"], rows["missing.n4"]
b, c, h = rows["bad.n4"], rows["close.n4"], rows["half.n4"]
se1 = math.sqrt(1.0 * 200 / 199 / 200)
ok = (abs(g["dnll"][0] + 0.29) < 1e-9 and abs(g["dnll"][1] + 0.09) < 1e-9 and abs(g["mean"] + 0.19) < 1e-9
      and abs(g["sd_over_seeds"] - math.sqrt(0.02)) < 1e-9 and g["verdict"] == "better on every seed"
      and g["ppl"] == [100, 101]
      and abs(m["mean"]) < 1e-9 and m["verdict"] == "unresolved"
      and x["dnll"] == [None, None] and x["n"] == 0 and x["verdict"] == "unresolved (missing seed)"
      and abs(b["mean"] - 0.3) < 1e-9 and b["verdict"] == "worse on every seed"
      and abs(c["dnll"][1] + 0.05) < 1e-9 and abs(c["dnll_stderr"][1] - se1) < 1e-9 and c["verdict"] == "unresolved"
      and h["n"] == 1 and abs(h["mean"] + 1.0) < 1e-9 and h["verdict"] == "unresolved (missing seed)")
sys.exit(not ok)' "$out"; then pass test_seed_table
else fail test_seed_table "got $out"; fi

# a base with no run on any seed is an error, not an empty table
if ! out=$(REPLIQ_CACHE=$tmp python3 "$tmp/repo/scripts/seed_table.py" m-rh 0,1 nosuch.n4 good.n4 2>&1) &&
    grep -q "no run of BASE nosuch.n4 on any seed" <<<"$out"; then pass test_seed_table_no_base
else fail test_seed_table_no_base "got $out"; fi

# a bad seed list is refused with a message naming it
if ! out=$(REPLIQ_CACHE=$tmp python3 "$tmp/repo/scripts/seed_table.py" m-rh 0,x base.n4 good.n4 2>&1) &&
    grep -q "SEEDS is a comma-separated list" <<<"$out"; then pass test_seed_table_bad_seeds
else fail test_seed_table_bad_seeds "got $out"; fi

# paired_nll: runs that scored different numbers of tokens are refused, not truncated
python3 -c 'open("'"$tmp"'/short.nll", "w").write("3.0\n" * 150)'
if ! out=$(python3 "$repo/scripts/paired_nll.py" "$tmp/a.nll" "$tmp/short.nll" 2>&1) &&
    grep -q "200 and 150 tokens" <<<"$out"; then pass test_paired_nll_lengths
else fail test_paired_nll_lengths "got $out"; fi

# rep_summary: a per-row GPTQ file, a K = 1 file 0.28 lower per token on average, and a K = 2 file whose
# NLLs are 50 tokens short: its paired columns are '—' and a warning says why, never a truncated pair
cp "$repo/scripts/rep_summary.py" "$tmp/repo/scripts/"
rq=$tmp/quant/m-rh-s9
mkdir -p "$rq"
nll "$rq/gptq-w2pc-sym.n4.l40.nll" 5.0 0.1
nll "$rq/rep-w2-k1.n4.l40.nll" 4.71 0.12
python3 -c 'open("'"$rq"'/rep-w2-k2.n4.l40.nll", "w").write("4.0\n" * 150)'
for l in gptq-w2pc-sym.n4 rep-w2-k1.n4 rep-w2-k2.n4; do
    echo "{\"label\": \"$l\", \"machine\": \"test\", \"quant\": {\"calib_tokens\": 8192, \"linear\": {\"bpw\": 2.0}},
 \"llamacpp\": {\"ppl\": 100.0, \"kl\": 1.0, \"dnll\": 2.0, \"dnll_stderr\": 0.02, \"chunks\": 40, \"ctx\": 512, \"tokens\": 200}}" |
        tr -d '\n'
    echo
done > "$tmp/rs.jsonl"
out=$(python3 "$tmp/repo/scripts/rep_summary.py" "$rq" "$tmp/rs.jsonl" 2>"$tmp/rs.err")
se=$(python3 -c 'import math; print("%.4f" % math.sqrt(0.01**2 * 200 / 199 / 200))')
if grep -q "| RH | W2 | 1 | .*| -0.2800 ± $se (better) | — |" <<<"$out" &&
    grep -q "| RH | W2 | 2 | .*| — | — |" <<<"$out" &&
    grep -q "rep-w2-k2.n4 against .*200 and 150 tokens" "$tmp/rs.err"; then pass test_rep_summary
else fail test_rep_summary "got $out / $(cat "$tmp/rs.err")"; fi

# rot_seeds: kind a at ΔNLL 2.0 and 2.2 over two seeds, kind b at 1.5 and 1.6: b − a = −0.55 with
# standard error sqrt((0.02 + 0.005) / 2) = 0.1118, so b is better; b is below a in all 4 seed pairs.
# Every file starts with an older line for the label at ΔNLL 9.9: the last line wins, as in quant_table.py
cp "$repo/scripts/rot_seeds.py" "$tmp/repo/scripts/"
for x in "a 0 2.0" "a 1 2.2" "b 0 1.5" "b 1 1.6"; do
    set -- $x
    for d in 9.9 "$3"; do
        echo "{\"label\": \"w2.n4\", \"llamacpp\": {\"ppl\": 99.0, \"dnll\": $d, \"dnll_stderr\": 0.02}}"
    done > "$tmp/repo/results/quant-m-$1-s$2-l40-g5.jsonl"
done
out=$(python3 "$tmp/repo/scripts/rot_seeds.py" --json m 0,1 w2.n4 a b 2>&1)
if python3 -c 'import json, math, sys; j = json.loads(sys.argv[1])
ok = (abs(j["diff"] + 0.55) < 1e-12 and abs(j["diff_stderr"] - math.sqrt(0.025 / 2)) < 1e-12 and j["verdict"] == "better"
      and j["b_below_a_pairs"] == 4 and j["pairs"] == 4 and abs(j["kinds"]["a"]["sd_over_seeds"] - math.sqrt(0.02)) < 1e-12)
sys.exit(not ok)' "$out"; then pass test_rot_seeds
else fail test_rot_seeds "got $out"; fi
# a seed without its result line is an error naming the file, not a smaller sample
if ! out=$(python3 "$tmp/repo/scripts/rot_seeds.py" m 0,1,2 w2.n4 a b 2>&1) && grep -q "quant-m-a-s2-l40-g5.jsonl not found" <<<"$out"
then pass test_rot_seeds_missing
else fail test_rot_seeds_missing "got $out"; fi

# rep_adaptive: two layers of 10 x 10; K = 2 buys 0.10 in blk.0 and 0.08 in blk.1, and a budget of
# 1.5x K = 1 pays for one of them: the larger gain, blk.0. With --acts, blk.1's input is four times
# as outlying (ratio 40 against 10; median 25): weights 1.6 and 0.4, so blk.1 gets the replica.
for k in 1 2; do
    python3 -c 'import json, sys; k = int(sys.argv[1])
for l, g in ((0, 0.10), (1, 0.08)):
    print(json.dumps({"name": f"blk.{l}.attn_q.weight", "rows": 10, "cols": 10, "k": k, "rel_err": 0.5 - g * (k - 1)}))' \
        "$k" >"$tmp/log$k.jsonl"
done
python3 -c 'import json
site = lambda r: {"ratio": r}
print(json.dumps({"layers": [dict(layer=l, attn_in=site(r), o_in=site(1), ffn_in=site(1), down_in=site(1))
                             for l, r in ((0, 10.0), (1, 40.0))]}))' >"$tmp/acts.json"
ad() { python3 "$repo/scripts/rep_adaptive.py" "$@" "$repo/recipes/rep-w1-k1.json" 1.5 "$tmp/ad.json" \
    "$tmp/log1.jsonl" "$tmp/log2.jsonl" >/dev/null && python3 -c 'import json, sys
print(" ".join(o["pattern"] for o in json.load(open(sys.argv[1]))["overrides"]))' "$tmp/ad.json"; }
plain=$(ad) weighted=$(ad --acts "$tmp/acts.json")
touch -d '2000-01-01' "$tmp/ad.json"
again=$(ad --acts "$tmp/acts.json")
if [ "$plain" = blk.0.attn_q.weight ] && [ "$weighted" = blk.1.attn_q.weight ] && [ "$again" = "$weighted" ] &&
    [ "$(stat -c %Y "$tmp/ad.json")" = "$(date -d '2000-01-01' +%s)" ]; then
    pass test_rep_adaptive
else
    fail test_rep_adaptive "plain '$plain', with --acts '$weighted', again '$again' (want blk.0, blk.1, blk.1, mtime kept)"
fi

# layer_compare: attn_q errors 0.2 / 0.1 in A and 0.1 / 0.3 in B: means 0.15 and 0.2, ratios 0.5 and
# 3 (median 1.75), B lower in 1 of 2; a tensor in one file only is counted, not compared
printf '%s\n' '{"name": "blk.0.attn_q.weight", "rel_err": 0.2}' '{"name": "blk.1.attn_q.weight", "rel_err": 0.1}' \
    '{"name": "blk.2.attn_q.weight", "rel_err": 0.1}' >"$tmp/lca.jsonl"
printf '%s\n' '{"name": "blk.0.attn_q.weight", "rel_err": 0.1}' '{"name": "blk.1.attn_q.weight", "rel_err": 0.3}' >"$tmp/lcb.jsonl"
out=$(python3 "$repo/scripts/layer_compare.py" "$tmp/lca.jsonl" "$tmp/lcb.jsonl" 2>&1)
if grep -q '^| attn_q | 2 | 0.15000 | 0.20000 | 1.750 | 1 of 2 |$' <<<"$out" && grep -q '^(1 tensors in only one file' <<<"$out" &&
    ! python3 "$repo/scripts/layer_compare.py" "$tmp/lca.jsonl" /etc/hostname >/dev/null 2>&1; then
    pass test_layer_compare
else
    fail test_layer_compare "got $out"
fi

# offset_share: two attn_q tensors; B's share 0.2 against 0.1 (higher) and 0.1 against 0.2 (lower),
# offset energy 0.2*0.4/(0.1*0.5) = 1.6 and 0.1*0.6/(0.2*0.3) = 1.0: median 1.3 (the shares alone
# would give 1.25); a file without mean_share is refused by name
printf '%s\n' '{"name": "blk.0.attn_q.weight", "rel_err": 0.5, "mean_share": 0.1}' \
    '{"name": "blk.1.attn_q.weight", "rel_err": 0.3, "mean_share": 0.2}' >"$tmp/osa.jsonl"
printf '%s\n' '{"name": "blk.0.attn_q.weight", "rel_err": 0.4, "mean_share": 0.2}' \
    '{"name": "blk.1.attn_q.weight", "rel_err": 0.6, "mean_share": 0.1}' >"$tmp/osb.jsonl"
out=$(python3 "$repo/scripts/offset_share.py" "$tmp/osa.jsonl" "$tmp/osb.jsonl" 2>&1)
if grep -q '^| attn_q | 2 | 0.1500 | 0.1500 | 1 of 2 | 1.300 |$' <<<"$out" &&
    python3 "$repo/scripts/offset_share.py" "$tmp/osa.jsonl" "$tmp/lca.jsonl" 2>&1 | grep -q 'not a record with mean_share'; then
    pass test_offset_share
else
    fail test_offset_share "got $out"
fi

# mix_summary: A at 3.0, B at 2.6 (B - A = -0.4), a mix at 2.9 + 0.02 (i mod 2): mix - A = -0.09,
# mix - B = +0.31 (se 0.01 / sqrt(199) = 0.0007), share of B - A 22%; the table keeps the last line
# of a name; a missing NLL file is named
nll "$tmp/ma.l40.nll" 3.0 0.0
nll "$tmp/mb.l40.nll" 2.6 0.0
nll "$tmp/mix.nll" 2.9 0.02
: >"$tmp/ma.gguf"; : >"$tmp/mb.gguf"
ms() { python3 "$repo/scripts/mix_summary.py" "$@"; }
pj='{"ppl": 18.5, "kl": 0.25}'
{ ms row mlp 'blk.*.ffn_*' "$tmp/ma.gguf" "$tmp/mb.gguf" "$tmp/x.gguf" "$tmp/a.nll" "$pj" l40
  ms row mlp 'blk.*.ffn_*' "$tmp/ma.gguf" "$tmp/mb.gguf" "$tmp/x.gguf" "$tmp/mix.nll" "$pj" l40; } >"$tmp/mix.jsonl"
out=$(ms table "$tmp/mix.jsonl" "$tmp/ma.gguf" "$tmp/mb.gguf" l40 2>&1)
if grep -q '^B - A: -0.4000 ± 0.0000 (better)$' <<<"$out" &&
    [ "$(grep -c '^| mlp ' <<<"$out")" = 1 ] &&
    grep -q '^| mlp (`blk.\*.ffn_\*`) | 18.500 | 0.2500 | -0.0900 ± 0.0007 (better) | +0.3100 ± 0.0007 (worse) | 22% |$' <<<"$out" &&
    ms table "$tmp/mix.jsonl" "$tmp/ma.gguf" "$tmp/nob.gguf" l40 2>&1 | grep -q 'nob.l40.nll not found'; then
    pass test_mix_summary
else
    fail test_mix_summary "got $out"
fi
