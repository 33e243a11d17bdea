#!/usr/bin/env bash
# Runs each test binary given as an argument, echoes its output, and ends with one
# summary line: "N passed, N failed, N skipped". Exit status is nonzero if any case
# failed or a binary crashed.
set -u
pass=0; fail=0; skip=0; crashed=0
for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(grep -c '^PASS ' <<<"$out"); f=$(grep -c '^FAIL ' <<<"$out"); s=$(grep -c '^SKIP ' <<<"$out")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $t: exited with status $rc"; fail=$((fail + 1)); crashed=1
    fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $crashed -eq 0 ]
