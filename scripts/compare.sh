#!/usr/bin/env bash
# Paired comparison of two model files on the same tokens: the per-token NLL
# difference (B minus A) with its standard error, KL(A || B), and a verdict that
# calls one better only beyond two standard errors.
#   scripts/compare.sh A.gguf B.gguf [CHUNKS] [PROTOCOL]
# CHUNKS: chunks (llamacpp, ctx 512) or windows (gptq, ctx 2048); default 40.
# FLAGS: extra ppl flags for both runs, e.g. FLAGS="--abits 4 --kvbits 4".
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder}"
[ $# -ge 2 ] || { echo "usage: scripts/compare.sh A.gguf B.gguf [CHUNKS] [llamacpp|gptq]" >&2; exit 2; }
a=$1 b=$2 chunks=${3:-40} proto=${4:-llamacpp}
R=${REPLIQ_BIN:-build/repliq}
base=$(mktemp --suffix=.klbase); trap 'rm -f "$base"' EXIT
$R ppl -m "$a" -f wiki.test.raw --protocol "$proto" --chunks "$chunks" -t "${THREADS:-2}" --quiet ${FLAGS:-} --kl-save "$base" | grep PPL | sed "s|^|A $(basename "$a"): |"
$R ppl -m "$b" -f wiki.test.raw --protocol "$proto" --chunks "$chunks" -t "${THREADS:-2}" --quiet ${FLAGS:-} --kl-base "$base" |
    grep -E "PPL|KL|verdict" | sed "s|^|B $(basename "$b"): |"
