#!/usr/bin/env bash
# llama.cpp's own low-bit types on a repliq model, measured with both programs: an importance
# matrix from repliq's calibration text, llama-quantize of the F32 reference to each type, then
# bits per weight (repliq bpw), llama-perplexity and repliq ppl (both protocols unless WINDOWS is none; KL against F32).
#
# Usage: scripts/llamacpp_types.sh MODEL_NAME [CHUNKS] [WINDOWS]
#   MODEL_NAME  a packaged model (smollm2-135m); its F32 reference is $REPLIQ_CACHE/MODEL.f32.gguf
#               (made with 'repliq convert' when missing)
#   CHUNKS      ctx-512 chunks of wiki.test.raw for llama-perplexity and repliq's llamacpp protocol
#               (default: all)
#   WINDOWS     ctx-2048 windows for repliq's gptq protocol (default: all; 'none' skips that
#               protocol, as for Qwen2.5-1.5B, where each pass costs 15-30 minutes here)
# Env: THREADS (default nproc), TYPES (default below), IM_CTX / IM_CHUNKS (imatrix context and
#      chunks, default 512 / 48 = 24,576 tokens = repliq's 12 x 2048 calibration tokens),
#      REPLIQ_CACHE, REPLIQ_DATA (default ../shared/data), REPLIQ_BIN (default build/repliq),
#      LQ_DIR (outputs, default $REPLIQ_CACHE/lq/MODEL; never inside the repository).
# Per-token NLLs of every repliq ppl run sit beside its JSON as .nll (the F32 run's as
# base-PROTO.kl.nll), for scripts/paired_nll.py against any other file scored on the same tokens.
# TABLE_ONLY=1 prints the table of what RESULTS already holds for MODEL, CHUNKS, WINDOWS and TYPES
# (F32 first) and runs nothing else.
# Results: one JSON line per type in results/llamacpp-types-MODEL.jsonl (a rerun replaces the
# lines with the same model, type, chunks and windows), and a markdown table on stdout.
# Every step writes OUT plus OUT.key (its command and its inputs' size and sha256, or mtime for files over 64 MiB) when it
# succeeds; a rerun skips a step whose OUT.key matches, so an interrupted run resumes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "llamacpp_types: error: $*" >&2; exit 1; }
log() { echo "llamacpp_types: $*" >&2; }

if [ $# -lt 1 ] || [ $# -gt 3 ]; then die "usage: scripts/llamacpp_types.sh MODEL_NAME [CHUNKS] [WINDOWS]"; fi
MODEL=$1
CHUNKS=${2:-all}
WINDOWS=${3:-all}
PROTOS="llamacpp gptq"
[ "$WINDOWS" = none ] && PROTOS=llamacpp
count_ok() { [ "$1" = all ] || [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
count_ok "$CHUNKS" || die "CHUNKS is a positive integer or 'all', got '$CHUNKS'"
count_ok "$WINDOWS" || [ "$WINDOWS" = none ] || die "WINDOWS is a positive integer, 'all' or 'none', got '$WINDOWS'"
TYPES=${TYPES:-Q2_K IQ2_XXS IQ2_XS IQ2_S IQ3_XXS Q3_K_S Q4_K_M IQ1_S IQ1_M}
THREADS=${THREADS:-$(nproc 2>/dev/null || echo 2)}
IM_CTX=${IM_CTX:-512}
IM_CHUNKS=${IM_CHUNKS:-48}
SEED=0
CACHE=${REPLIQ_CACHE:-$HOME/.cache/repliq}
DATA=${REPLIQ_DATA:-$REPO/../shared/data}
RQ=${REPLIQ_BIN:-$REPO/build/repliq}
LBIN=$CACHE/llama.cpp-0.3.16/bin
OUT=${LQ_DIR:-$CACHE/lq/$MODEL}
RESULTS=$REPO/results/llamacpp-types-$MODEL.jsonl
F32=$CACHE/$MODEL.f32.gguf
WIKI=$DATA/wiki.test.raw
C4=$DATA/c4-en-validation-sample-2000.jsonl.xz
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

# table: the markdown table of RESULTS for this model, CHUNKS and WINDOWS, F32 and TYPES in order
table() {
# shellcheck disable=SC2086 # TYPES is a list of words
python3 - "$RESULTS" "$MODEL" "$CHUNKS" "$WINDOWS" F32 $TYPES <<'EOF'
import json, sys
res, model, chunks, windows = sys.argv[1:5]
order = sys.argv[5:]
rows = {}
for l in open(res):
    r = json.loads(l)
    if (r["model"], r["chunks"], r["windows"]) == (model, chunks, windows) and r["type"] in order:
        rows[r["type"]] = r
def rq(r, proto):
    v = r["repliq_" + proto]
    if v == "skipped": return "—", "—", "—"
    if isinstance(v, str): return v, "", ""
    if "kl" not in v: return "%.4f ± %.4f" % (v["ppl"], v["ppl_stderr"]), "0 (reference)", "0"
    return "%.4f ± %.4f" % (v["ppl"], v["ppl_stderr"]), "%.4f" % v["kl"], "%+.4f ± %.4f" % (v["dnll"], v["dnll_stderr"])
print("\n%s, wiki.test.raw: llama.cpp and repliq llamacpp protocol ctx 512, %s chunks; repliq gptq protocol ctx 2048, %s\n"
      % (model, chunks, "not run" if windows == "none" else windows + " windows"))
print("| type | linear bpw | linear-layer types | total bpw | threads | quantize s | quantize peak MiB "
      "| llama.cpp PPL | repliq PPL (llamacpp) | KL (llamacpp) | ΔNLL ± se (llamacpp) | repliq PPL (gptq) | KL (gptq) |")
print("|---|---:|---|---:|---:|---:|---:|---|---|---|---|---|---|")
for t in order:
    if t not in rows: continue
    r = rows[t]
    types = ", ".join("%s: %d" % kv for kv in r["linear_types"].items())
    a, ka, da = rq(r, "llamacpp"); g, kg, _ = rq(r, "gptq")
    print("| %s | %.4f | %s | %.4f | %d | %s | %s | %.4f ± %.4f | %s | %s | %s | %s | %s |" % (
        t, r["bpw_linear"], types, r["bpw_total"], r["threads"], r.get("quantize_seconds", "–"),
        r.get("quantize_peak_rss_mib", "–"), r["llama_ppl"], r["llama_ppl_stderr"], a, ka, da, g, kg))
EOF
}

if [ -n "${TABLE_ONLY:-}" ]; then
    [ -f "$RESULTS" ] || die "$RESULTS not found: nothing measured for $MODEL yet"
    table
    exit 0
fi
# ---- checks: tools, data, output folder ------------------------------------------------------
for t in llama-imatrix llama-quantize llama-perplexity; do
    [ -x "$LBIN/$t" ] || die "$LBIN/$t not found: build llama.cpp's tools with scripts/build-llamacpp.sh"
done
[ -x "$RQ" ] || die "$RQ not found: build repliq with 'make build/repliq'"
command -v python3 >/dev/null || die "python3 not found (it writes the JSON lines and the table)"
[ -f "$WIKI" ] || die "$WIKI not found: set REPLIQ_DATA to the folder holding wiki.test.raw"
[ -f "$C4" ] || die "$C4 not found: set REPLIQ_DATA to the folder holding the C4 sample"
python3 "$REPO/scripts/gen_iq_tables.py" >/dev/null || die "cannot write the IQ lattice tables (scripts/gen_iq_tables.py; needs the gguf package: scripts/setup.sh)"
mkdir -p "$OUT"
case "$(cd "$OUT" && pwd -P)/" in "$(cd "$REPO" && pwd -P)/"*) die "LQ_DIR $OUT is inside the repository; put it elsewhere" ;; esac

# ---- step bookkeeping --------------------------------------------------------------------------
# key CMD... INPUT-FILES after '--': the command line and, for each input, its size and its
# sha256 when it is at most 64 MiB (text data: a re-provisioned data folder with new mtimes and the
# same bytes keeps every step), its mtime when larger (models: hashing 7 GB would cost a minute)
key() {
    local sep=0 a size
    for a in "$@"; do
        if [ "$a" = -- ]; then sep=1; continue; fi
        if [ $sep = 0 ]; then printf '%s ' "$a"; continue; fi
        size=$(stat -c %s "$a")
        if [ "$size" -le $((64 << 20)) ]; then
            printf '%s %s sha256:%s\n' "$a" "$size" "$(sha256sum < "$a" | cut -d' ' -f1)"
        else stat -c '%n %s %Y' "$a"; fi
    done
    echo
}
fresh() { [ -f "$1" ] && [ -f "$1.key" ] && [ "$(cat "$1.key")" = "$2" ]; }
mark() { printf '%s\n' "$2" > "$1.key.tmp" && mv "$1.key.tmp" "$1.key"; }
# timed TIMEFILE CMD...: wall seconds and peak RSS (KiB) of CMD into TIMEFILE as "wall_s maxrss_kib"
timed() {
    local tf=$1; shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%e %M' -o "$tf.tmp" "$@" || { rm -f "$tf.tmp"; return 1; }
        tail -n 1 "$tf.tmp" > "$tf" && rm -f "$tf.tmp"
    else
        python3 - "$tf" "$@" <<'EOF'
import resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.call(sys.argv[2:])
if rc == 0:
    with open(sys.argv[1], "w") as f:
        f.write("%.2f %d\n" % (time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
EOF
    fi
}
chunk_args() { [ "$1" = all ] || echo "--chunks $1"; }

# ---- 1. the F32 reference ------------------------------------------------------------------------
if [ ! -f "$F32" ]; then
    log "making the F32 reference $F32"
    "$RQ" convert -m "$MODEL" -o "$F32" >&2
fi

# ---- 2. calibration text: repliq's shuffled, "\n\n"-joined C4 documents --------------------------
CALIB=$OUT/calib-seed$SEED.txt
CALIB_CMD=("$RQ" calib -m "$MODEL" --seed "$SEED" --text-out "$CALIB")
k=$(key repliq calib -m "$MODEL" --seed "$SEED" -- "$C4")
if ! fresh "$CALIB" "$k"; then
    log "calibration text: ${CALIB_CMD[*]}"
    "${CALIB_CMD[@]}" >&2 || die "repliq calib failed (does this build have the 'calib' command?)"
    [ -s "$CALIB" ] || die "repliq calib wrote no text to $CALIB"
    mark "$CALIB" "$k"
fi

# ---- 3. importance matrix on the F32 reference ---------------------------------------------------
IMAT=$OUT/imatrix-c$IM_CTX-n$IM_CHUNKS.gguf
IMAT_CMD=("$LBIN/llama-imatrix" -m "$F32" -f "$CALIB" -o "$IMAT" -c "$IM_CTX" --chunks "$IM_CHUNKS" --no-ppl -t "$THREADS")
k=$(key "${IMAT_CMD[@]}" -- "$F32" "$CALIB")
if ! fresh "$IMAT" "$k"; then
    log "importance matrix: ${IMAT_CMD[*]}"
    rm -f "$IMAT"
    { echo "# ${IMAT_CMD[*]}"; timed "$IMAT.time" "${IMAT_CMD[@]}"; } > "$IMAT.log" 2>&1 ||
        die "llama-imatrix failed; see $IMAT.log"
    [ -f "$IMAT" ] || die "llama-imatrix wrote no $IMAT; see $IMAT.log"
    mark "$IMAT" "$k"
fi

# ---- 4. repliq's reference runs on the F32 model: KL bases, and the F32 row ----------------------
# proto_args PROTO: context and count for a protocol
proto_args() {
    if [ "$1" = llamacpp ]; then echo "--protocol llamacpp -c 512 $(chunk_args "$CHUNKS")"
    else echo "--protocol gptq -c 2048 $(chunk_args "$WINDOWS")"; fi
}
proto_tag() { if [ "$1" = llamacpp ]; then echo "llamacpp-c512-n$CHUNKS"; else echo "gptq-c2048-n$WINDOWS"; fi; }
for proto in $PROTOS; do
    base=$OUT/base-$(proto_tag $proto).kl
    read -ra pa <<<"$(proto_args $proto)"
    cmd=("$RQ" ppl -m "$F32" -f "$WIKI" "${pa[@]}" -t "$THREADS" --quiet --kl-save "$base" --nll-save "$base.nll" --json-out "$base.json")
    k=$(key repliq ppl "${pa[@]}" --kl-save --nll-save -- "$F32" "$WIKI")
    if ! fresh "$base" "$k"; then
        log "KL base ($proto): ${cmd[*]}"
        "${cmd[@]}" > "$base.log" 2>&1 || die "repliq ppl --kl-save failed; see $base.log"
        mark "$base" "$k"
    fi
done

# ---- 5. each type: quantize, bpw, llama-perplexity, repliq ppl -----------------------------------
# repliq_ppl MODEL_FILE PROTO OUTJSON: repliq ppl with --kl-base; a file repliq cannot dequantize
# gives {"na": ...} (not cached: a later repliq may have the dequantizer)
repliq_ppl() {
    local q=$1 proto=$2 out=$3 base k pa
    base=$OUT/base-$(proto_tag "$proto").kl
    read -ra pa <<<"$(proto_args "$proto")"
    local cmd=("$RQ" ppl -m "$q" -f "$WIKI" "${pa[@]}" -t "$THREADS" --quiet --kl-base "$base" --nll-save "${out%.json}.nll" --json-out "$out")
    k=$(key repliq ppl "${pa[@]}" --kl-base --nll-save -- "$q" "$WIKI" "$base")
    fresh "$out" "$k" && return 0
    log "repliq ppl ($proto): ${cmd[*]}"
    rm -f "$out" "$out.key"
    if "${cmd[@]}" > "$out.log" 2>&1; then
        mark "$out" "$k"
    elif grep -q "no dequantizer" "$out.log"; then
        python3 -c 'import json,sys; print(json.dumps({"na": "n/a (no IQ dequantizer)", "reason": sys.argv[1]}))' \
            "$(grep -m1 "no dequantizer" "$out.log")" > "$out"
    else
        die "repliq ppl failed on $q; see $out.log"
    fi
}

# llama_ppl MODEL_FILE LOG: llama-perplexity at ctx 512 with an f32 K/V cache (docs/llamacpp.md)
llama_ppl() {
    local q=$1 lg=$2 k ca
    read -ra ca <<<"$(chunk_args "$CHUNKS")"
    local cmd=("$LBIN/llama-perplexity" -m "$q" -f "$WIKI" -c 512 "${ca[@]}" -t "$THREADS" -ctk f32 -ctv f32)
    k=$(key "${cmd[@]}" -- "$q" "$WIKI")
    fresh "$lg" "$k" && return 0
    log "llama-perplexity: ${cmd[*]}"
    { echo "# ${cmd[*]}"; "${cmd[@]}"; } > "$lg.tmp" 2>&1 || die "llama-perplexity failed on $q; see $lg.tmp"
    grep -q "Final estimate" "$lg.tmp" || die "no 'Final estimate' in $lg.tmp"
    mv "$lg.tmp" "$lg"
    mark "$lg" "$k"
}

# record TYPE FILE QUANT_CMD: one JSON line into RESULTS (replacing an older one for the same run)
record() {
    local type=$1 q=$2 qcmd=$3 p=$OUT/$1
    python3 - "$RESULTS" "$MODEL" "$type" "$q" "$CHUNKS" "$WINDOWS" "$qcmd" "${IMAT_CMD[*]}" "$p.bpw.json" \
        "$p.quant.time" "$p.llama-ppl-c512-n$CHUNKS.log" "$p.repliq-$(proto_tag llamacpp).json" \
        "$p.repliq-$(proto_tag gptq).json" "$THREADS" <<'EOF'
import json, os, re, sys
(res, model, typ, q, chunks, windows, qcmd, imcmd, bpwf, timef, llf, rlf, rgf, threads) = sys.argv[1:15]
def load(f):
    return json.load(open(f)) if os.path.exists(f) else None
b = load(bpwf)
row = {"model": model, "type": typ, "file": q, "file_bytes": os.path.getsize(q),
       "chunks": chunks, "windows": windows, "threads": int(threads),
       "bpw_linear": b["linear"]["bpw"], "linear_types": b["linear"]["types"],
       "bpw_embed_output": b["embed_output"]["bpw"], "tied_output": b["embed_output"]["tied"],
       "embed_types": {k: v for k, v in b["embed_output"].items() if k.endswith("_type")},
       "bpw_total": b["total"]["bpw"], "quantize_command": qcmd or None, "imatrix_command": imcmd}
if os.path.exists(timef):
    wall, rss = open(timef).read().split()
    row["quantize_seconds"] = float(wall)
    row["quantize_peak_rss_mib"] = round(int(rss) / 1024, 1)
log = open(llf, errors="replace").read()
m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
row["llama_ppl"], row["llama_ppl_stderr"] = float(m.group(1)), float(m.group(2))
row["llama_ppl_command"] = log.splitlines()[0].lstrip("# ")
m = re.search(r"prompt eval time = .*?([0-9.]+) tokens per second", log)
row["llama_tokens_per_second"] = float(m.group(1)) if m else None
for proto, f in (("llamacpp", rlf), ("gptq", rgf)):
    j = load(f)
    if j is None and proto == "gptq" and windows == "none":
        row["repliq_gptq"] = "skipped"
        continue
    if j is None or "na" in j:
        row["repliq_" + proto] = (j or {}).get("na", "missing")
        if j: row["repliq_" + proto + "_reason"] = j["reason"]
        continue
    row["repliq_" + proto] = {k: j[k] for k in ("ppl", "ppl_stderr", "tokens", "chunks", "ctx", "seconds")}
    for k in ("kl", "kl_stderr", "top1_agree", "dnll", "dnll_stderr"):
        if k in j: row["repliq_" + proto][k] = j[k]
same = lambda r: (r.get("model"), r.get("type"), r.get("chunks"), r.get("windows")) == (model, typ, chunks, windows)
old = [l for l in open(res)] if os.path.exists(res) else []
keep = [l for l in old if l.strip() and not same(json.loads(l))]
os.makedirs(os.path.dirname(res), exist_ok=True)
with open(res + ".tmp", "w") as f:
    f.writelines(keep)
    f.write(json.dumps(row) + "\n")
os.replace(res + ".tmp", res)
EOF
}

evaluate() { # TYPE FILE: bpw, llama-perplexity, repliq ppl per protocol in PROTOS
    local type=$1 q=$2 p=$OUT/$1
    "$RQ" bpw -m "$q" --json > "$p.bpw.json.tmp" && mv "$p.bpw.json.tmp" "$p.bpw.json"
    llama_ppl "$q" "$p.llama-ppl-c512-n$CHUNKS.log"
    local proto
    for proto in $PROTOS; do repliq_ppl "$q" "$proto" "$p.repliq-$(proto_tag "$proto").json"; done
}

# the F32 reference itself: KL against itself is 0, so its repliq numbers come from the base runs
for proto in $PROTOS; do
    cp "$OUT/base-$(proto_tag $proto).kl.json" "$OUT/F32.repliq-$(proto_tag $proto).json"
done
"$RQ" bpw -m "$F32" --json > "$OUT/F32.bpw.json"
llama_ppl "$F32" "$OUT/F32.llama-ppl-c512-n$CHUNKS.log"
record F32 "$F32" ""

for type in $TYPES; do
    q=$OUT/$MODEL-$type.gguf
    qcmd=("$LBIN/llama-quantize" --allow-requantize --imatrix "$IMAT" "$F32" "$q" "$type" "$THREADS")
    k=$(key "${qcmd[@]}" -- "$F32" "$IMAT")
    if ! fresh "$q" "$k"; then
        log "quantize: ${qcmd[*]}"
        rm -f "$q"
        { echo "# ${qcmd[*]}"; timed "$OUT/$type.quant.time" "${qcmd[@]}"; } > "$OUT/$type.quant.log" 2>&1 ||
            die "llama-quantize $type failed; see $OUT/$type.quant.log"
        mark "$q" "$k"
    fi
    evaluate "$type" "$q"
    record "$type" "$q" "${qcmd[*]}"
done

# ---- 6. the table of this run -----------------------------------------------------------------------
table
log "results: $RESULTS"
