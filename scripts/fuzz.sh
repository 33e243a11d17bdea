#!/usr/bin/env bash
# Builds the libFuzzer target for the GGUF reader (clang, ASan + UBSan) and runs it
# for SECONDS (default 600) on the corpus fuzz/corpus-gguf, seeded with small
# valid files written by repliq's own writer. Not part of CI.
# usage: scripts/fuzz.sh [SECONDS] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}; jobs=${2:-1}
out=build/fuzz; mkdir -p "$out" fuzz/corpus-gguf
clang -std=c11 -g -O1 -D_GNU_SOURCE -ffp-contract=off -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -Isrc fuzz/fuzz_gguf.c src/util.c src/gguf.c src/ggml_types.c src/dequant*.c \
    -lm -o "$out/fuzz_gguf"
# seeds: the writer's sample from the tests, and the first 64 KiB of any cached model's header
if [ -z "$(ls -A fuzz/corpus-gguf)" ]; then
    clang -std=c11 -D_GNU_SOURCE -Isrc -DRQ_FUZZ_SEED fuzz/seed_gguf.c src/util.c src/gguf_write.c src/ggml_types.c \
        src/dequant*.c -lm -o "$out/seed_gguf"
    "$out/seed_gguf" fuzz/corpus-gguf
fi
"$out/fuzz_gguf" -max_total_time="$secs" -jobs="$jobs" -workers="$jobs" -max_len=65536 \
    -artifact_prefix="$out/" fuzz/corpus-gguf 2>&1 | tee "$out/fuzz.log" | grep -E "^#|ERROR|SUMMARY|Done" | tail -20
