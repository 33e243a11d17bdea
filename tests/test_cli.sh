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
printf '{"repliq_recipe": 1, "bits": 4, "grop": 64}' >"$tmp/typo.json"
expect test_cli_recipe_unknown_key "unknown key 'grop'" "$bin" quantize -m x --recipe "$tmp/typo.json" -o "$tmp/o.gguf"
printf '{"repliq_recipe": 1, "bits": 0}' >"$tmp/bits0.json"
expect test_cli_recipe_bits0 "'bits' = 0" "$bin" quantize -m x --recipe "$tmp/bits0.json" -o "$tmp/o.gguf"
expect test_cli_quantize_usage "usage" "$bin" quantize -m x
printf '{"repliq_recipe": 1, "bits": 2, "replicate": {"k": 4, "vary": ["scale"]}}' >"$tmp/rep_scale.json"
expect test_cli_recipe_rep_collapse "one decoder" "$bin" quantize -m x --recipe "$tmp/rep_scale.json" -o "$tmp/o.gguf"
printf '{"repliq_recipe": 1, "bits": 2, "replicate": {"k": 2, "combine": "block"}}' >"$tmp/rep_block.json"
expect test_cli_recipe_rep_combine "block-level combination is not built" "$bin" quantize -m x --recipe "$tmp/rep_block.json" -o "$tmp/o.gguf"
expect test_cli_quantize_tensor_log_arg "needs a value\|usage\|missing" "$bin" quantize -m x --recipe "$tmp/rep_block.json" -o "$tmp/o.gguf" --tensor-log
expect test_cli_ppl_bad_aclip "act clip" "$bin" ppl -m x -f y --abits 8 --aclip 2
expect test_cli_rotate_usage "usage: repliq rotate" "$bin" rotate -m x
expect test_cli_rotate_bad_kind "expected hadamard, rh, ro or none" "$bin" rotate -m x -o y --r1 foo
expect test_cli_rotate_bad_seed "expected an integer" "$bin" rotate -m x -o y --seed -1
expect test_cli_dfrot_usage "usage: repliq dfrot" "$bin" dfrot -m x
expect test_cli_dfrot_bad_aclip "aclip" "$bin" dfrot -m x -o y --aclip 0
expect test_cli_inspect_usage "inspect" "$bin" inspect
# the top-level usage names every command and every inspect tool
"$bin" >/dev/null 2>"$tmp/usage"
missing=""
for c in pull list info tokenize ppl convert bpw reference quantize calib rotate dfrot "inspect acts" "inspect kv" "inspect layers" mix; do
    grep -q -- "^  $c " "$tmp/usage" || missing="$missing '$c'"
done
if [ -z "$missing" ]; then pass test_cli_usage_lists_all; else fail test_cli_usage_lists_all "usage lacks$missing"; fi
expect test_cli_inspect_layers_usage "usage: repliq inspect layers" "$bin" inspect layers -m x
expect test_cli_inspect_layers_both "choose one" "$bin" inspect layers -m x --ref y -f z --calib
expect test_cli_inspect_layers_feed "feed must be" "$bin" inspect layers -m x --ref y --feed foo
expect test_cli_mix_usage "usage: repliq mix" "$bin" mix -a x -b y -o z
expect test_cli_mix_missing "cannot open" "$bin" mix -a /nonexistent/a.gguf -b y --from-b 'blk.*' -o "$tmp/m.gguf"
expect test_cli_ppl_bad_keep_massive "keep-massive" "$bin" ppl -m x -f y --keep-massive -3
model=${REPLIQ_CACHE:-$HOME/.cache/repliq}/smollm2-135m.gguf
if [ -f "$model" ]; then
    : >"$tmp/empty.txt"
    expect test_cli_empty_text "empty" "$bin" ppl -m "$model" -f "$tmp/empty.txt" --quiet
    printf 'abc \xff\xfe def\n' >"$tmp/bad.txt"
    expect test_cli_not_utf8 "UTF-8" "$bin" ppl -m "$model" -f "$tmp/bad.txt" --quiet
    printf 'a short text.\n' >"$tmp/short.txt"
    expect test_cli_short_text "fewer than two windows" "$bin" ppl -m "$model" -f "$tmp/short.txt" --quiet
    expect test_cli_missing_text "not found" "$bin" ppl -m "$model" -f "$tmp/nope.txt" --quiet
    printf '{"repliq_recipe": 1, "method": "gptq"}' >"$tmp/gptq.json"
    expect test_cli_quantize_no_calib "not found" "$bin" quantize -m "$model" --recipe "$tmp/gptq.json" -o "$tmp/o.gguf" -f "$tmp/nope.jsonl"
    [ ! -e "$tmp/o.gguf" ] && [ ! -e "$tmp/o.gguf.tmp" ] && pass test_cli_quantize_nothing_left || fail test_cli_quantize_nothing_left "output left behind"
    expect test_cli_ppl_bad_act "act bits" "$bin" ppl -m "$model" -f "$tmp/short.txt" --abits 1 --quiet
    expect test_cli_kl_base_bad "bad magic\|cannot open" "$bin" ppl -m "$model" -f "$tmp/short.txt" --kl-base "$tmp/short.txt" --quiet
    # inspect kv on a model without a K bias: every layer reads "none", and leaving the (absent)
    # bias out changes no error; 4-bit keys err by more than 0 and by less than the keys' RMS
    expect test_cli_inspect_kv_bits "2..8" "$bin" inspect kv -m "$model" --bits 9
    expect test_cli_inspect_kv_short "fewer than one window" "$bin" inspect kv -m "$model" -f "$tmp/short.txt" -c 100000
    for i in 1 2 3 4 5 6; do cat "$tmp/short.txt"; done >"$tmp/six.txt"
    if "$bin" inspect kv -m "$model" -f "$tmp/six.txt" -c 16 -t 1 >"$tmp/kv.out" 2>"$tmp/kv.err" &&
        awk -F'|' '/^\| [0-9]+ \|/ { n++; if ($3 !~ /none/ || $8 + 0 != $9 + 0 || !($8 > 0) || !($8 < $6)) bad++ }
                   END { exit !(n == 30 && bad == 0) }' "$tmp/kv.out"; then
        pass test_cli_inspect_kv
    else
        fail test_cli_inspect_kv "$(head -c 400 "$tmp/kv.err" "$tmp/kv.out")"
    fi
    expect test_cli_inspect_layers_no_calib "records no calibration" "$bin" inspect layers -m "$model" --ref "$model" --calib
    # The thread count does not change a quantized file (src/gemm.c): GPTQ on blocks 0 and 1 from
    # one window of 64 tokens with 1 and with 3 threads (the files differed before session 11).
    data=${REPLIQ_DATA:-}
    if [ -n "$data" ] && [ -f "$data/c4-en-validation-sample-2000.jsonl.xz" ]; then
        printf '%s' '{"repliq_recipe": 1, "method": "gptq", "bits": 2, "sym": true, "group": "per_channel",
          "calib": {"n": 1, "len": 64},
          "overrides": [{"pattern": "blk.[2-9]*", "method": "keep"}, {"pattern": "blk.1[0-9].*", "method": "keep"}]}' >"$tmp/thr.json"
        for t in 1 3; do
            "$bin" quantize -m "$model" --recipe "$tmp/thr.json" -o "$tmp/thr$t.gguf" -t "$t" >/dev/null 2>"$tmp/thr$t.err" || cat "$tmp/thr$t.err"
        done
        if [ -s "$tmp/thr1.gguf" ] && cmp -s "$tmp/thr1.gguf" "$tmp/thr3.gguf" && ! cmp -s "$tmp/thr1.gguf" "$model"; then
            pass test_cli_quantize_threads_same
        else
            fail test_cli_quantize_threads_same "quantized files from -t 1 and -t 3 differ or are missing"
        fi
        # its layer errors on the windows it was fitted on, and on a text (two windows of 8 tokens):
        # 210 tensors over all the tokens; blocks 0 and 1 err, the kept blocks do not
        layers_case() { # NAME TOKENS inspect-layers-options...
            local name=$1 ntok=$2; shift 2
            if "$bin" inspect layers -m "$tmp/thr1.gguf" --ref "$model" "$@" -t 1 --json "$tmp/$name.jsonl" \
                >"$tmp/$name.out" 2>"$tmp/$name.err" && python3 -c 'import json, sys
e = [json.loads(l) for l in open(sys.argv[1])]
ok = (len(e) == 210 and all(x["tokens"] == int(sys.argv[2]) and x["ref"] > 0 for x in e)
      and all((x["rel_err"] > 0) == (x["layer"] < 2) for x in e))
sys.exit(not ok)' "$tmp/$name.jsonl" "$ntok"; then
                pass "test_cli_$name"
            else
                fail "test_cli_$name" "$(head -c 400 "$tmp/$name.err" "$tmp/$name.out")"
            fi
        }
        layers_case inspect_layers_calib 64 --calib
        layers_case inspect_layers_text 16 -f "$tmp/six.txt" -c 8 --chunks 2
    else
        echo "SKIP test_cli_quantize_threads_same: REPLIQ_DATA not set or without the C4 sample"
        echo "SKIP test_cli_inspect_layers_calib: REPLIQ_DATA not set or without the C4 sample"
        echo "SKIP test_cli_inspect_layers_text: REPLIQ_DATA not set or without the C4 sample"
    fi
else
    for t in empty_text not_utf8 short_text missing_text kl_base_bad inspect_kv_bits inspect_kv_short inspect_kv quantize_no_calib quantize_nothing_left ppl_bad_act quantize_threads_same inspect_layers_no_calib inspect_layers_calib inspect_layers_text; do echo "SKIP test_cli_$t: smollm2-135m not cached"; done
fi
