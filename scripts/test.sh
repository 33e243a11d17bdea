#!/usr/bin/env bash
# The whole test suite from a fresh checkout: install packages, build, fetch the
# default model (SmolLM2-135M), run the tests, then the same tests under address
# and undefined-behaviour sanitizers. Ends with "N passed, N failed, N skipped".
# Needs REPLIQ_DATA (the WikiText-2 / C4 folder).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# the IQ lattice grids are generated, not kept in the tree; a no-op when up to date
python3 scripts/gen_iq_tables.py
: "${REPLIQ_DATA:?set REPLIQ_DATA to the data folder (wiki.test.raw, wiki.valid.raw, the C4 sample)}"
export REPLIQ_DATA
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" all
build/repliq pull smollm2-135m
set +e
make -s test 2>&1 | tee build/test.log; rc1=${PIPESTATUS[0]}
make -s -j"$jobs" asan 2>&1 | tee build/test-asan.log; rc2=${PIPESTATUS[0]}
set -e
# one summary line for the whole run
sum() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1; }
read -r p1 _ f1 _ s1 _ <<<"$(sum build/test.log | tr -d ',')"
read -r p2 _ f2 _ s2 _ <<<"$(sum build/test-asan.log | tr -d ',')"
echo "release: $(sum build/test.log); sanitizers: $(sum build/test-asan.log)"
echo "$((${p1:-0} + ${p2:-0})) passed, $((${f1:-1} + ${f2:-1})) failed, $((${s1:-0} + ${s2:-0})) skipped"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
