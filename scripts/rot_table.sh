#!/usr/bin/env bash
# Rotations x quantization recipes: for each rotation, rotate MODEL (repliq rotate,
# f32 into the cache) and run scripts/quant_table.sh on the rotated copy, measured
# against MODEL's own reference (KL and paired NLL). Results go to
# results/quant-<model>-<rot>-l<CHUNKS>-g<WINDOWS>.jsonl ("none" = the model as is).
#   scripts/rot_table.sh MODEL CHUNKS WINDOWS "none rh ro" RECIPE[@a8|@a4kv4|@a4kv4u]...
# A rotation name is one of:
#   none        no rotation
#   rh, ro      R1 and R2 of that kind (random Hadamard / random orthogonal), seed $ROT_SEED (0),
#               with QuaRot's online Hadamards R3 (Q/K after RoPE) and R4 (down projection input)
#   rh-off, ro-off   the same without the online R3/R4
#   dfrot       R1 refined by DFRot (repliq dfrot: 100 iterations, gamma 100, A4, one C4 window of
#               2048 tokens) from the Hadamard start, R2 rh, online R3/R4
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 chunks=$2 windows=$3 rots=$4
shift 4
R=${REPLIQ_BIN:-build/repliq}
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
seed=${ROT_SEED:-0}
$R pull "$model" >/dev/null
for rot in $rots; do
    if [ "$rot" = none ]; then
        scripts/quant_table.sh "$model" "$chunks" "$windows" "$@"
        continue
    fi
    kind=${rot%-off} online=--online
    [ "$kind" != "$rot" ] && online=""
    case $kind in rh|ro|dfrot) ;; *) echo "rot_table: unknown rotation '$rot'" >&2; exit 2 ;; esac
    file=$cache/$model-$rot-s$seed.gguf
    if [ ! -f "$file" ]; then
        echo "rot_table: rotating $model ($rot, seed $seed)" >&2
        if [ "$kind" = dfrot ]; then
            $R dfrot -m "$model" -o "$file" --r2 rh $online --seed "$seed" --quiet | tee "results/dfrot-$model-s$seed.log"
        else
            $R rotate -m "$model" -o "$file" --r1 "$kind" --r2 "$kind" $online --seed "$seed" --quiet
        fi
    fi
    MODEL_FILE=$file MODEL_TAG=$model-$rot-s$seed scripts/quant_table.sh "$model" "$chunks" "$windows" "$@"
done
