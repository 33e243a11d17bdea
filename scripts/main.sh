#!/usr/bin/env bash
# The main job from a fresh checkout: install packages, build, fetch the default
# model (SmolLM2-135M) and print its reference perplexity table on WikiText-2 test
# (both protocols, whole file; about 50 minutes on 2 cores: ~17 for ctx 512, ~31 for
# ctx 2048, measured at 300 and 162 tokens/s).
# Needs REPLIQ_DATA (the folder holding wiki.test.raw). Extra arguments go to
# 'repliq reference' (e.g. --chunks 8 --windows 2 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder (wiki.test.raw)}"
export REPLIQ_DATA
make -j"$(nproc 2>/dev/null || echo 2)" build/repliq
build/repliq pull smollm2-135m
build/repliq reference -m smollm2-135m -f wiki.test.raw -t "$(nproc 2>/dev/null || echo 2)" "$@"
