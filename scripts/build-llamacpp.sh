#!/usr/bin/env bash
# Builds llama.cpp, the reference implementation, from the pinned llama-cpp-python 0.3.16 sdist
# into a cache outside the tree, plus our scripts/llamacpp_logits.c against its libllama.
#
# Usage: scripts/build-llamacpp.sh            build if needed, then print where the binaries are
# Env:   REPLIQ_CACHE  cache root (default $HOME/.cache/repliq)
#        LCP_SDIST     an already-downloaded llama_cpp_python-0.3.16.tar.gz (still sha256-checked)
#        JOBS          parallel compile jobs (default 2)
#
# Layout under $REPLIQ_CACHE/llama.cpp-0.3.16/:
#   dl/     the sdist        src/    its vendor/llama.cpp     build/  CMake build tree
#   bin/    llama-perplexity llama-quantize llama-imatrix llama-tokenize rq-llamacpp-logits
# A second run does nothing except rebuild rq-llamacpp-logits when its source changed.
set -euo pipefail

LCP_VERSION=0.3.16
LCP_SHA256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
# The llama.cpp commit llama-cpp-python 0.3.16 vendors (its CHANGELOG.md); the sdist has no .git,
# so we write it into cmake/build-info.cmake and the tools print it in their "build:" line.
LLAMA_COMMIT=4227c9be4268ac844921b90f31595f81236bd317
TARGETS=(llama-perplexity llama-quantize llama-imatrix llama-tokenize)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${REPLIQ_CACHE:-$HOME/.cache/repliq}
ROOT=$CACHE/llama.cpp-$LCP_VERSION
SDIST=$ROOT/dl/llama_cpp_python-$LCP_VERSION.tar.gz
SRC=$ROOT/src
BUILD=$ROOT/build
BIN=$ROOT/bin
JOBS=${JOBS:-2}
PYTHON=${PYTHON:-python3}

die() { echo "build-llamacpp: error: $*" >&2; exit 1; }
log() { echo "build-llamacpp: $*" >&2; }

for tool in cmake g++ gcc tar sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found; install it (e.g. apt-get install cmake g++)"
done

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$LCP_SHA256" ]; }

# 1. The sdist: LCP_SDIST if given, else pip download (pip prepares metadata, which installs the
#    build backend into an isolated env; if that fails, retry without isolation).
fetch_sdist() {
    sha_ok "$SDIST" && return 0
    mkdir -p "$ROOT/dl"
    if [ -n "${LCP_SDIST:-}" ]; then
        sha_ok "$LCP_SDIST" || die "LCP_SDIST=$LCP_SDIST missing or sha256 is not $LCP_SHA256"
        cp "$LCP_SDIST" "$SDIST.tmp" && mv "$SDIST.tmp" "$SDIST"
        return 0
    fi
    local tmp=$ROOT/dl/pip.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    log "downloading llama-cpp-python==$LCP_VERSION sdist with pip"
    "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$LCP_VERSION" -d "$tmp" ||
        "$PYTHON" -m pip download --no-deps --no-binary :all: --no-build-isolation \
            "llama-cpp-python==$LCP_VERSION" -d "$tmp" ||
        die "pip download failed; download llama_cpp_python-$LCP_VERSION.tar.gz by hand and set LCP_SDIST"
    [ -f "$tmp/$(basename "$SDIST")" ] || die "pip did not produce $(basename "$SDIST") in $tmp"
    sha_ok "$tmp/$(basename "$SDIST")" || die "sha256 of downloaded sdist is not $LCP_SHA256"
    mv "$tmp/$(basename "$SDIST")" "$SDIST"
    rm -rf "$tmp"
}

# 2. vendor/llama.cpp only, extracted to a temporary name and renamed when complete.
extract_src() {
    [ -f "$SRC/.repliq-extracted" ] && return 0
    local tmp=$ROOT/src.tmp top=llama_cpp_python-$LCP_VERSION
    rm -rf "$tmp" && mkdir -p "$tmp"
    log "extracting $top/vendor/llama.cpp"
    tar -xzf "$SDIST" -C "$tmp" "$top/vendor/llama.cpp"
    sed -i "s/^set(BUILD_COMMIT \"unknown\")/set(BUILD_COMMIT \"${LLAMA_COMMIT:0:8}\")/" \
        "$tmp/$top/vendor/llama.cpp/cmake/build-info.cmake"
    grep -q "BUILD_COMMIT \"${LLAMA_COMMIT:0:8}\"" "$tmp/$top/vendor/llama.cpp/cmake/build-info.cmake" ||
        die "could not set BUILD_COMMIT in cmake/build-info.cmake"
    printf 'llama-cpp-python %s sdist sha256 %s\nllama.cpp commit %s\n' \
        "$LCP_VERSION" "$LCP_SHA256" "$LLAMA_COMMIT" > "$tmp/$top/vendor/llama.cpp/.repliq-extracted"
    rm -rf "$SRC"
    mv "$tmp/$top/vendor/llama.cpp" "$SRC"
    rm -rf "$tmp"
}

# 3. Static libraries, so the binaries in bin/ do not depend on the build tree.
#    GGML_NATIVE stays on (the default): -march=native, as a user building llama.cpp would get.
build_tools() {
    local t done=1
    for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || done=0; done
    [ $done = 1 ] && [ -f "$BUILD/libllama.path" ] && return 0
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    log "configuring $BUILD"
    cmake -S "$SRC" -B "$BUILD" "${gen[@]}" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_COMMON=ON \
        -DGGML_CCACHE=OFF \
        >&2
    log "building ${TARGETS[*]} llama with -j$JOBS"
    cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" llama >&2
    mkdir -p "$BIN"
    for t in "${TARGETS[@]}"; do
        [ -x "$BUILD/bin/$t" ] || die "$BUILD/bin/$t was not built"
        cp "$BUILD/bin/$t" "$BIN/$t.tmp" && mv "$BIN/$t.tmp" "$BIN/$t"
    done
    # Link order for rq-llamacpp-logits: llama first, then ggml, its CPU backend and ggml-base.
    local lib libs=()
    for lib in libllama.a libggml.a libggml-cpu.a libggml-base.a; do
        libs+=("$(find "$BUILD" -name "$lib" -print -quit)")
        [ -n "${libs[-1]}" ] || die "$lib not found under $BUILD"
    done
    printf '%s\n' "${libs[@]}" > "$BUILD/libllama.path"
}

# 4. Our logits dumper, C11 against llama.h; rebuilt whenever its source is newer.
build_logits() {
    local src=$REPO/scripts/llamacpp_logits.c out=$BIN/rq-llamacpp-logits
    [ -f "$src" ] || die "$src missing"
    [ -x "$out" ] && [ "$out" -nt "$src" ] && return 0
    log "compiling $src"
    mapfile -t libs < "$BUILD/libllama.path"
    gcc -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE \
        -DRQ_LLAMA_CPP_COMMIT="\"$LLAMA_COMMIT\"" -DRQ_LLAMA_CPP_PYTHON_VERSION="\"$LCP_VERSION\"" \
        -I"$SRC/include" -I"$SRC/ggml/include" -c "$src" -o "$BUILD/llamacpp_logits.o"
    g++ "$BUILD/llamacpp_logits.o" "${libs[@]}" -fopenmp -pthread -lm -o "$out.tmp"
    mv "$out.tmp" "$out"
}

fetch_sdist
extract_src
build_tools
build_logits

for t in "${TARGETS[@]}" rq-llamacpp-logits; do echo "$BIN/$t"; done
