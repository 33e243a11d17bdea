#!/usr/bin/env bash
# Evaluate quantized files already in the cache on the whole WikiText-2 test file
# (llamacpp protocol, ctx 512, all 592 chunks of SmolLM2's tokenization), keeping
# each token's NLL for paired comparisons (scripts/paired_nll.py), and compare each
# file after the first with the first, paired. One JSON line per file goes to
# results/wholefile-<tag>.jsonl.
#   REPLIQ_DATA=../shared/data scripts/whole_file.sh TAG LABEL...
# TAG: the cache folder ~/.cache/repliq/quant/TAG (e.g. smollm2-135m-rh-s0); LABEL:
# a file name there without .gguf (e.g. gptq-w2pc-sym.n4, made by quant_table.sh or
# rot_table.sh). About 30 minutes per SmolLM2 file with one thread (THREADS, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder}"
tag=$1
shift
threads=${THREADS:-2}
R=${REPLIQ_BIN:-build/repliq}
q=${REPLIQ_CACHE:-$HOME/.cache/repliq}/quant/$tag
res=results/wholefile-$tag.jsonl
mkdir -p results
for label in "$@"; do
    [ -f "$q/$label.gguf" ] || { echo "whole_file: $q/$label.gguf not found (make it with quant_table.sh)" >&2; exit 1; }
done
for label in "$@"; do
    echo "whole_file: evaluating $label" >&2
    pl=$($R ppl -m "$q/$label.gguf" -f wiki.test.raw -t "$threads" --quiet --json --nll-save "$q/$label.lall.nll" | tail -1)
    python3 - "$label" "$pl" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >>"$res" <<'PY'
import json, sys
label, pl, ncpu, cpu = sys.argv[1:]
print(json.dumps({"label": label, "llamacpp": json.loads(pl), "machine": f"{ncpu} cores, {cpu}"}))
PY
done
first=$1
shift
for label in "$@"; do
    echo -n "$tag: $label - $first: "
    python3 scripts/paired_nll.py "$q/$first.lall.nll" "$q/$label.lall.nll"
done
