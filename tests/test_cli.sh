#!/usr/bin/env bash
# The repliq program on bad input: each case exits nonzero with a message that
# says what was wrong. Cases that need a model use the packaged SmolLM2 when it is
# cached and are skipped otherwise.
set -u
bin=${REPLIQ_BIN:-build/repliq}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
# expect NAME PATTERN CMD...: nonzero exit and PATTERN in stderr
expect() {
    local name=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    if [ $rc -eq 0 ]; then fail "$name" "exit status 0"; 
    elif ! grep -q -- "$pat" "$tmp/err"; then fail "$name" "no '$pat' in: $(head -c 300 "$tmp/err")";
    else pass "$name"; fi
}
expect test_cli_unknown_command "unknown command" "$bin" frobnicate
expect test_cli_missing_model "not found\|neither a file" "$bin" ppl -m /nonexistent.gguf -f /etc/hostname
expect test_cli_unknown_name "repliq pull" "$bin" ppl -m no-such-model -f /etc/hostname
expect test_cli_bad_ctx "integer" "$bin" ppl -m x -f y -c abc
expect test_cli_bad_protocol "unknown protocol" "$bin" ppl -m x -f y --protocol foo
printf 'GGUF\003\000\000\000' >"$tmp/trunc.gguf"
expect test_cli_truncated_gguf "truncated" "$bin" ppl -m "$tmp/trunc.gguf" -f /etc/hostname
model=${REPLIQ_CACHE:-$HOME/.cache/repliq}/smollm2-135m.gguf
if [ -f "$model" ]; then
    : >"$tmp/empty.txt"
    expect test_cli_empty_text "empty" "$bin" ppl -m "$model" -f "$tmp/empty.txt" --quiet
    printf 'abc \xff\xfe def\n' >"$tmp/bad.txt"
    expect test_cli_not_utf8 "UTF-8" "$bin" ppl -m "$model" -f "$tmp/bad.txt" --quiet
    printf 'a short text.\n' >"$tmp/short.txt"
    expect test_cli_short_text "fewer than two windows" "$bin" ppl -m "$model" -f "$tmp/short.txt" --quiet
    expect test_cli_missing_text "not found" "$bin" ppl -m "$model" -f "$tmp/nope.txt" --quiet
    expect test_cli_kl_base_bad "bad magic\|cannot open" "$bin" ppl -m "$model" -f "$tmp/short.txt" --kl-base "$tmp/short.txt" --quiet
else
    for t in empty_text not_utf8 short_text missing_text kl_base_bad; do echo "SKIP test_cli_$t: smollm2-135m not cached"; done
fi
