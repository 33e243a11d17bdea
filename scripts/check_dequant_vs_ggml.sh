#!/usr/bin/env bash
# check_dequant_vs_ggml.sh - builds ggml's base library from a llama.cpp source tree
# (out of tree, in a cache folder) and compares repliq's dequantizers with ggml's C
# reference bit for bit on every tensor of the given GGUF files. Not part of CI.
#
# usage: scripts/check_dequant_vs_ggml.sh [model.gguf ...]
#   default models: the SmolLM2 and Qwen2.5-Coder-1.5B files in ~/.cache/repliq
#   LLAMA_CPP   llama.cpp source tree (default: llama-cpp-python 0.3.16's vendored copy, as
#               unpacked by scripts/build-llamacpp.sh)
#   GGML_BUILD  where ggml's objects go (default: ~/.cache/repliq/ggml-ref)
# Exit status 0 only if every value agrees.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
# the tree scripts/build-llamacpp.sh unpacks, else the one fetched for this work
llama=${LLAMA_CPP:-}
if [ -z "$llama" ]; then
    llama=$cache/llama.cpp-0.3.16/src
    [ -f "$llama/ggml/src/ggml-quants.c" ] || llama=/tmp/dl/lcpx/llama_cpp_python-0.3.16/vendor/llama.cpp
fi
build=${GGML_BUILD:-$cache/ggml-ref}
ggml=$llama/ggml

if [ ! -f "$ggml/src/ggml-quants.c" ]; then
    echo "no ggml sources at $ggml; set LLAMA_CPP to a llama.cpp checkout" >&2
    exit 2
fi

if [ $# -eq 0 ]; then
    set --
    for m in smollm2-135m.gguf qwen2.5-coder-1.5b.gguf; do
        if [ -f "$cache/$m" ]; then
            set -- "$@" "$cache/$m"
        else
            echo "note: $cache/$m not found, skipped" >&2
        fi
    done
fi

# ggml-base: the library that holds type_traits, the reference dequantize_row_*
# and the GGUF reader. Its C files get -ffp-contract=off, the reference semantics
# repliq is built with; no -march flags, so no fused multiply-adds either way.
mkdir -p "$build"
defs=(-D_GNU_SOURCE -DGGML_SCHED_MAX_COPIES=4 -DGGML_VERSION='"vendored"' -DGGML_COMMIT='"vendored"'
      -I"$ggml/include" -I"$ggml/src")
objs=()
base_srcs="ggml.c ggml-alloc.c ggml-quants.c ggml.cpp ggml-backend.cpp ggml-opt.cpp ggml-threading.cpp gguf.cpp"
for src in $base_srcs; do
    obj=$build/${src//./_}.o
    objs+=("$obj")
    [ "$obj" -nt "$ggml/src/$src" ] && continue
    echo "compiling ggml/src/$src" >&2
    case $src in
        *.c) gcc -std=gnu11 -O2 -ffp-contract=off -w "${defs[@]}" -c "$ggml/src/$src" -o "$obj" ;;
        *.cpp) g++ -std=gnu++17 -O1 -w "${defs[@]}" -c "$ggml/src/$src" -o "$obj" ;;
    esac
done

# Our side: only the files the comparison needs, with the project's flags. ggml's
# include folder comes first: its gguf.h, not repliq's, is the one meant here.
bin=$build/dequant_vs_ggml
gcc -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -ffp-contract=off -I"$ggml/include" -I"$root/src" \
    "$root/scripts/dequant_vs_ggml.c" "$root/src/util.c" "$root/src/ggml_types.c" \
    "$root/src/dequant.c" "$root/src/dequant_k.c" "$root/src/dequant_iq.c" "$root/src/paths.c" "${objs[@]}" -lstdc++ -lm -lpthread -o "$bin"

echo "ggml sources: $llama" >&2
"$bin" "$@"
