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
# TEXT=wiki.valid.raw measures on the validation text instead (for choices that the test text then
# judges): per-token NLLs are then NAME.valid-lCHUNKS.nll, the reference's saved run
# ref.valid-lCHUNKS.klbase, each made once when missing.
# Env: THREADS (default 2, as quant_table.sh), TEXT, REPLIQ_BIN, REPLIQ_CACHE, REPLIQ_DATA.
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
text=${TEXT:-wiki.test.raw}
case $text in
    wiki.test.raw) run=l$chunks ;;
    wiki.valid.raw) run=valid-l$chunks ;;
    *) echo "mix_table: TEXT is wiki.test.raw or wiki.valid.raw, got '$text'" >&2; exit 2 ;;
esac
base_l=$cache/quant/$model/ref.$run.klbase
na=$(basename "$a" .gguf) nb=$(basename "$b" .gguf) tag=$(basename "$(dirname "$a")")
res=results/mix-$tag-$na-$nb-$run.jsonl
if [ -n "${TABLE_ONLY:-}" ]; then python3 scripts/mix_summary.py table "$res" "$a" "$b" "$run"; exit; fi
if [ ! -f "$base_l" ]; then
    [ "$run" = "l$chunks" ] && { echo "mix_table: $base_l not found (quant_table.sh with the same CHUNKS writes it)" >&2; exit 1; }
    echo "mix_table: evaluating $model on $text for the reference run" >&2
    mkdir -p "$(dirname "$base_l")"
    $R ppl -m "$model" -f "$text" $(copt "$chunks") -t "$threads" --quiet --kl-save "$base_l" >/dev/null
fi
for f in "$a" "$b"; do # A's or B's per-token NLL when quant_table.sh did not leave one (the model itself)
    [ -f "${f%.gguf}.$run.nll" ] && continue
    echo "mix_table: evaluating $(basename "$f") on $text for its per-token NLL" >&2
    $R ppl -m "$f" -f "$text" $(copt "$chunks") -t "$threads" --quiet --nll-save "${f%.gguf}.$run.nll" >/dev/null
done
mkdir -p "$cache/quant/mix/$tag" results
for spec in "$@"; do
    name=${spec%%=*} pats=${spec#*=}
    [ "$name" != "$spec" ] && [ -n "$name" ] && [ -n "$pats" ] || { echo "mix_table: '$spec' is not NAME=PATTERNS" >&2; exit 2; }
    file=$cache/quant/mix/$tag/$na+$nb-$name.gguf nll=$cache/quant/mix/$tag/$na+$nb-$name.$run.nll
    echo "mix_table: $name: $na with $pats from $nb" >&2
    $R mix -a "$a" -b "$b" --from-b "$pats" -o "$file" >&2
    pl=$($R ppl -m "$file" -f "$text" $(copt "$chunks") -t "$threads" --quiet --kl-base "$base_l" --json \
        --nll-save "$nll" | tail -1)
    python3 scripts/mix_summary.py row "$name" "$pats" "$a" "$b" "$file" "$nll" "$pl" "$run" >>"$res"
done
python3 scripts/mix_summary.py table "$res" "$a" "$b" "$run"
