#!/usr/bin/env bash
# Which layers carry the difference between two quantized files of one model: for each
# NAME=PATTERNS, `repliq mix` takes file A with the tensors matching PATTERNS (comma-separated
# globs over GGUF names) taken from file B, evaluates the mix as quant_table.sh evaluates its files
# (llamacpp protocol, the first CHUNKS chunks of 512 tokens of wiki.test.raw, KL against MODEL's
# reference), and pairs its per-token NLL with A's and B's (quant_table.sh leaves them beside the
# files as NAME.lCHUNKS.nll).
#   scripts/mix_table.sh MODEL CHUNKS A.gguf B.gguf NAME=PATTERNS...
#   e.g. scripts/mix_table.sh qwen2.5-coder-1.5b 40 A.gguf B.gguf attn='blk.*.attn_*' mlp='blk.*.ffn_*'
# CHUNKS is a number or 'all', as for quant_table.sh. The activation/KV setting is the files' own
# (A's and B's must agree; repliq mix refuses otherwise): no @a8-style flags here.
# Either file may be the (rotated) model the other was made from: a file without its per-token NLL
# beside it (NAME.lCHUNKS.nll, which quant_table.sh leaves) is evaluated once first.
# Env: THREADS (default 2, as quant_table.sh), REPLIQ_BIN, REPLIQ_CACHE, REPLIQ_DATA.
# Mixed files go to $REPLIQ_CACHE/quant/mix/<A's folder>/; one JSON line per NAME is appended to
# results/mix-<A's folder>-<A>-<B>-l<CHUNKS>.jsonl (a rerun adds lines; the table reads the last of
# each name). TABLE_ONLY=1 prints the table of what that file holds and runs nothing.
set -euo pipefail
[ $# -ge 5 ] || { [ -n "${TABLE_ONLY:-}" ] && [ $# -eq 4 ]; } || { echo "usage: scripts/mix_table.sh MODEL CHUNKS A.gguf B.gguf NAME=PATTERNS..." >&2; exit 2; }
model=$1 chunks=$2
a=$(realpath -e "$3") || { echo "mix_table: $3 not found" >&2; exit 1; }
b=$(realpath -e "$4") || { echo "mix_table: $4 not found" >&2; exit 1; }
shift 4
cd "$(dirname "$0")/.."
R=${REPLIQ_BIN:-build/repliq}
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
threads=${THREADS:-2}
copt() { [ "$1" = all ] && echo "" || echo "--chunks $1"; }
base_l=$cache/quant/$model/ref.l$chunks.klbase
na=$(basename "$a" .gguf) nb=$(basename "$b" .gguf) tag=$(basename "$(dirname "$a")")
res=results/mix-$tag-$na-$nb-l$chunks.jsonl
if [ -n "${TABLE_ONLY:-}" ]; then python3 scripts/mix_summary.py table "$res" "$a" "$b" "$chunks"; exit; fi
[ -f "$base_l" ] || { echo "mix_table: $base_l not found (quant_table.sh with the same CHUNKS writes it)" >&2; exit 1; }
for f in "$a" "$b"; do # A's or B's per-token NLL when quant_table.sh did not leave one (the model itself)
    [ -f "${f%.gguf}.l$chunks.nll" ] && continue
    echo "mix_table: evaluating $(basename "$f") for its per-token NLL" >&2
    $R ppl -m "$f" -f wiki.test.raw $(copt "$chunks") -t "$threads" --quiet --nll-save "${f%.gguf}.l$chunks.nll" >/dev/null
done
mkdir -p "$cache/quant/mix/$tag" results
for spec in "$@"; do
    name=${spec%%=*} pats=${spec#*=}
    [ "$name" != "$spec" ] && [ -n "$name" ] && [ -n "$pats" ] || { echo "mix_table: '$spec' is not NAME=PATTERNS" >&2; exit 2; }
    file=$cache/quant/mix/$tag/$na+$nb-$name.gguf nll=$cache/quant/mix/$tag/$na+$nb-$name.l$chunks.nll
    echo "mix_table: $name: $na with $pats from $nb" >&2
    $R mix -a "$a" -b "$b" --from-b "$pats" -o "$file" >&2
    pl=$($R ppl -m "$file" -f wiki.test.raw $(copt "$chunks") -t "$threads" --quiet --kl-base "$base_l" --json \
        --nll-save "$nll" | tail -1)
    python3 scripts/mix_summary.py row "$name" "$pats" "$a" "$b" "$file" "$nll" "$pl" "$chunks" >>"$res"
done
python3 scripts/mix_summary.py table "$res" "$a" "$b" "$chunks"
