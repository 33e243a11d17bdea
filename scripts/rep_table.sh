#!/usr/bin/env bash
# Layer replication on MODEL (default smollm2-135m): per-row GPTQ baselines and
# replicated fits at W1/W2/W3 on the RH-rotated model (scripts/rot_table.sh), the
# adaptive-K recipe from the W1 runs' per-tensor logs (scripts/rep_adaptive.py, 2x
# compute), W2 without rotation, K=1 vs K=2 at 4x the calibration tokens, and the
# trained MLPs (mlp_train: K=1, K=2 summed, K=2 paths), true-sequential rows and the
# block / model training targets, rotation ensembles; then the table
# (scripts/rep_summary.py). llamacpp protocol only, CHUNKS chunks of 512.
#   REPLIQ_DATA=../shared/data scripts/rep_table.sh [MODEL] [CHUNKS]
# About 5 hours on 2 cores for SmolLM2 at 40 chunks. Files already in the cache are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2-135m} chunks=${2:-40}
export CALIB_N=${CALIB_N:-4} LLAMACPP_ONLY=1
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
q=$cache/quant/$model-rh-s${ROT_SEED:-0}
scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/gptq-w1pc-sym.json recipes/gptq-w2pc-sym.json \
    recipes/gptq-w3pc-sym.json recipes/rep-w2-k1.json recipes/rep-w2-k2.json recipes/rep-w2-k4.json \
    recipes/rep-w2-k8.json recipes/rep-w2-k1-rows.json recipes/rep-w2-k1-i8.json recipes/rep-w1-k1.json \
    recipes/rep-w1-k2.json recipes/rep-w1-k4.json recipes/rep-w1-k8.json \
    recipes/rep-w3-k1.json
adapt=recipes/rep-w1-adapt2x-${model%%-*}-rh.json
python3 scripts/rep_adaptive.py recipes/rep-w1-k1.json 2 "$adapt" "$q/rep-w1-k1.n$CALIB_N.tensors.jsonl" \
    "$q/rep-w1-k4.n$CALIB_N.tensors.jsonl"
scripts/rot_table.sh "$model" "$chunks" 5 rh "$adapt"
# adaptive K in {1, 2, 8} at 2x compute, plain and with each layer's gain weighted by how outlying
# its input is (repliq inspect acts on the rotated model, one window of 2048 tokens of wiki.valid.raw:
# selection reads validation text, never the test text)
rq=${REPLIQ_BIN:-build/repliq}
acts=$cache/acts-$model-rh-s${ROT_SEED:-0}-valid-c2048-n1.json
[ -f "$acts" ] || "$rq" inspect acts -m "$cache/$model-rh-s${ROT_SEED:-0}.gguf" -f "$REPLIQ_DATA/wiki.valid.raw" \
    -c 2048 --chunks 1 -t "${THREADS:-2}" --json "$acts" >/dev/null
logs=()
for k in 1 2 8; do logs+=("$q/rep-w1-k$k.n$CALIB_N.tensors.jsonl"); done
python3 scripts/rep_adaptive.py recipes/rep-w1-k1.json 2 "recipes/rep-w1-adapt2x-k128-${model%%-*}-rh.json" "${logs[@]}"
python3 scripts/rep_adaptive.py --acts "$acts" recipes/rep-w1-k1.json 2 \
    "recipes/rep-w1-adapt2x-k128-acts-${model%%-*}-rh.json" "${logs[@]}"
scripts/rot_table.sh "$model" "$chunks" 5 rh "recipes/rep-w1-adapt2x-k128-${model%%-*}-rh.json" \
    "recipes/rep-w1-adapt2x-k128-acts-${model%%-*}-rh.json"
scripts/rot_table.sh "$model" "$chunks" 5 none recipes/gptq-w2pc-sym.json recipes/gptq-w3pc-sym.json \
    recipes/rep-w2-k1.json recipes/rep-w2-k4.json
CALIB_N=$((4 * CALIB_N)) scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/rep-w2-k1.json recipes/rep-w2-k2.json
# the MLP's factors trained (mlp_train): K = 1, K = 2 summed, K = 2 paths after the nonlinearity
scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/rep-w2-k1-mt.json recipes/rep-w2-k2-mlp.json \
    recipes/rep-w2-k2-mt.json
scripts/rot_table.sh "$model" "$chunks" 5 none recipes/rep-w2-k1-mt.json recipes/rep-w2-k2-mlp.json
# true-sequential input collection (-ts): per-row GPTQ, and the trained K = 1 MLP with each
# training target (the reference MLP's output, the reference block's, the reference model's)
scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/gptq-w2pc-sym-ts.json recipes/rep-w2-k1-mt-ts.json \
    recipes/rep-w2-k1-mt-ts-block.json recipes/rep-w2-k1-mt-ts-model.json
# the model target at W1 and without rotation; its lite form (as run on Qwen) and with attn_output trained too
scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/gptq-w1pc-sym-ts.json recipes/rep-w1-k1-mt-ts-model.json \
    recipes/rep-w2-k1-mt-ts-model-lite.json recipes/rep-w2-k1-mt-ts-model-oproj.json \
    recipes/rep-w2-k1-mt-ts-model-nofit.json
scripts/rot_table.sh "$model" "$chunks" 5 none recipes/gptq-w2pc-sym-ts.json recipes/rep-w2-k1-mt-ts-model.json
# rotation ensembles: replicas k >= 1 reading the input through their own Hadamard transform
# (and group-128 GPTQ as the control at about the same bits)
scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/gptq-w2g128.json recipes/rep-w2-k2-rot.json recipes/rep-w2-k4-rot.json \
    recipes/rep-w2-k8-rot.json recipes/rep-w2-k2-rot-s1.json recipes/rep-w2-k4-rot-s1.json \
    recipes/rep-w2-k4-rot-s2.json
# the K = 1 fit on the model rotated with another seed (how much the model's rotation alone moves it)
ROT_SEED=1 scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/rep-w2-k1.json recipes/gptq-w2pc-sym.json
ROT_SEED=2 scripts/rot_table.sh "$model" "$chunks" 5 rh recipes/rep-w2-k1.json
python3 scripts/rep_summary.py "$q" "results/quant-$model-rh-s${ROT_SEED:-0}-l$chunks-g5.jsonl" \
    "$cache/quant/$model" "results/quant-$model-l$chunks-g5.jsonl"
