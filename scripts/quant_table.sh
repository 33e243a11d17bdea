#!/usr/bin/env bash
# Quantize a model with each recipe and measure it: bits per weight, file size,
# WikiText-2 test perplexity in both protocols, KL divergence and paired NLL
# difference to the reference, quantization time and peak memory. One JSON line
# per recipe goes to results/quant-<model>-l<CHUNKS>-g<WINDOWS>.jsonl; scripts/quant_table.py prints
# the table.
#   scripts/quant_table.sh MODEL CHUNKS WINDOWS RECIPE.json...
# CHUNKS: llamacpp-protocol chunks of 512 ("all" = whole file); WINDOWS: gptq-
# protocol windows of 2048 ("all" likewise). Outputs under $REPLIQ_CACHE/quant/<model>
# (default ~/.cache/repliq). An entry "RECIPE.json@a8" evaluates RECIPE's file with
# 8-bit activations (@a8, @a4kv4; @a4kv4km keeps the tokens whose residual RMS is over 20x the
# median at f16, the "massive activations kept in 16-bit" ablation; @a4kv4u quantizes the keys
# without the K projection's bias, which Qwen2 needs). CALIB_N=4 uses 4 calibration
# windows instead of the recipe's. MODEL_FILE=F quantizes F (e.g. a rotated copy of
# MODEL, see scripts/rot_table.sh) under the name MODEL_TAG, still measured against
# MODEL's reference. Each quantized tensor's error and bits go to
# <out>/<recipe>.tensors.jsonl (repliq quantize --tensor-log), each token's NLL
# (llamacpp protocol) to <out>/<label>.l<CHUNKS>.nll for scripts/paired_nll.py. LLAMACPP_ONLY=1 skips the gptq protocol (its column stays empty).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder}"
model=$1 chunks=$2 windows=$3
shift 3
threads=${THREADS:-2}
# CALIB_N: calibration windows of 2048 tokens (default: the recipe's, 12)
nopt=${CALIB_N:+-n $CALIB_N}
tag=${CALIB_N:+.n$CALIB_N}
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
tagm=${MODEL_TAG:-$model}
out=$cache/quant/$tagm refdir=$cache/quant/$model
mkdir -p "$out" "$refdir" results
res=results/quant-$tagm-l$chunks-g$windows.jsonl
R=${REPLIQ_BIN:-build/repliq}
ref=$($R pull "$model" >/dev/null 2>&1; echo "$cache/$model.gguf")
[ -f "$ref" ] || { echo "quant_table: model $model is not in the cache (repliq pull $model)" >&2; exit 1; }
src=${MODEL_FILE:-$ref}
[ -f "$src" ] || { echo "quant_table: MODEL_FILE $src not found" >&2; exit 1; }
copt() { [ "$1" = all ] && echo "" || echo "--chunks $1"; }
base_l=$refdir/ref.l$chunks.klbase base_g=$refdir/ref.g$windows.klbase
[ -f "$base_l" ] || $R ppl -m "$ref" -f wiki.test.raw $(copt "$chunks") -t "$threads" --quiet --kl-save "$base_l" >/dev/null
[ -n "${LLAMACPP_ONLY:-}" ] || [ -f "$base_g" ] || $R ppl -m "$ref" -f wiki.test.raw --protocol gptq $(copt "$windows") -t "$threads" --quiet --kl-save "$base_g" >/dev/null
for spec in "$@"; do
    recipe=${spec%@*} act=""
    [ "$spec" != "$recipe" ] && act=${spec#*@}
    name=$(basename "$recipe" .json)
    file=$out/$name$tag.gguf qjson=$out/$name$tag.quant.json
    if [ ! -f "$file" ] || [ ! -f "$qjson" ] || [ "$recipe" -nt "$file" ]; then
        echo "quant_table: quantizing $model with $recipe" >&2
        $R quantize -m "$src" --recipe "$recipe" -o "$file" -t "$threads" $nopt --quiet --json \
            --tensor-log "$out/$name$tag.tensors.jsonl" | tail -1 >"$qjson.tmp"
        mv "$qjson.tmp" "$qjson"
    fi
    flags=""
    case "$act" in
        "") ;;
        a8) flags="--abits 8" ;;
        a4kv4) flags="--abits 4 --kvbits 4" ;;
        a4kv4km) flags="--abits 4 --kvbits 4 --keep-massive 20" ;;  # massive-activation tokens kept at f16
        a4kv4u) flags="--abits 4 --kvbits 4 --kv-unbias" ;;  # keys quantized without the K bias (Qwen2)
        *) echo "quant_table: unknown activation setting @$act" >&2; exit 2 ;;
    esac
    label=$name$tag${act:+@$act}
    echo "quant_table: evaluating $label" >&2
    pl=$($R ppl -m "$file" -f wiki.test.raw $(copt "$chunks") -t "$threads" --quiet --kl-base "$base_l" $flags --json \
        --nll-save "$out/$label.l$chunks.nll" | tail -1)
    pg=null
    [ -n "${LLAMACPP_ONLY:-}" ] || pg=$($R ppl -m "$file" -f wiki.test.raw --protocol gptq $(copt "$windows") -t "$threads" --quiet --kl-base "$base_g" $flags --json | tail -1)
    python3 - "$label" "$recipe" "$qjson" "$pl" "$pg" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >>"$res" <<'PY'
import json, sys
label, recipe, qjson, pl, pg, ncpu, cpu = sys.argv[1:]
print(json.dumps({"label": label, "recipe": recipe, "quant": json.load(open(qjson)),
                  "llamacpp": json.loads(pl), "gptq": json.loads(pg), "machine": f"{ncpu} cores, {cpu}"}))
PY
done
python3 scripts/quant_table.py "$res"
