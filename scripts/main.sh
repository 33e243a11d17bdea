#!/usr/bin/env bash
# The main job from a fresh checkout: install packages, build, fetch the default model
# (SmolLM2-135M), then quantize it with four recipes (RTN and GPTQ at 4 bits, groups of
# 128, and at 2 bits, groups of 64; GPTQ calibrated on 12 x 2048 tokens of the C4 sample)
# and measure each file against the reference on WikiText-2 test: bits per weight, file
# size, perplexity in both protocols, KL divergence and paired NLL difference, time and
# memory. About 25 minutes on 2 cores.
# Needs REPLIQ_DATA (wiki.test.raw and the C4 sample). CHUNKS (default 40) and WINDOWS
# (default 5) set the evaluated subset ("all" for the whole file, about 50 minutes per
# recipe); RECIPES overrides the list. The reference perplexity table alone:
# build/repliq reference.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder (wiki.test.raw, the C4 sample)}"
export REPLIQ_DATA
make -j"$(nproc 2>/dev/null || echo 2)" build/repliq
build/repliq pull smollm2-135m
recipes=${RECIPES:-recipes/rtn-w4g128.json recipes/gptq-w4g128.json recipes/rtn-w2g64.json recipes/gptq-w2g64.json}
# shellcheck disable=SC2086
THREADS=$(nproc 2>/dev/null || echo 2) scripts/quant_table.sh smollm2-135m "${CHUNKS:-40}" "${WINDOWS:-5}" $recipes
