#!/usr/bin/env bash
# Writes tests/fixtures/golden/ from llama.cpp, the reference implementation: golden token ids of
# wiki.test.raw / wiki.valid.raw and one logits file per model (tools from build-llamacpp.sh).
#
# Usage: scripts/make_golden.sh [MODEL...]     MODEL: smollm2-135m qwen2.5-coder-1.5b (default: both)
# Env:   REPLIQ_CACHE  models and tools (default $HOME/.cache/repliq)
#        REPLIQ_DATA   wiki.test.raw, wiki.valid.raw (default ../shared/data from the repo root)
#
# Per model, from the packaged GGUF $REPLIQ_CACHE/MODEL.gguf:
#  (a) $REPLIQ_CACHE/MODEL.f32.gguf = llama-quantize --allow-requantize MODEL.gguf F32
#      (every weight dequantized to f32; MODEL.f32.gguf.src records the source sha256).
#  (b) tokens-MODEL-wiki.{test,valid}.txt: the ids llama-perplexity -f FILE tokenizes to, made with
#      llama-tokenize --ids --no-escape --no-parse-special --log-disable on FILE minus one trailing
#      '\n' (common's -f drops it; llama-tokenize reads the file as is and would unescape "\n"
#      and parse control tokens by default). llama-tokenize adds BOS iff the vocab's add_bos is
#      set, which is what llama_tokenize(add_special=true) in llama-perplexity does (it asserts
#      add_eos is off). As a check, llama-perplexity --chunks 1 --kl-divergence-base writes the
#      ids it really uses; its first 512 must match.
#  (c) logits-MODEL.bin: rq-llamacpp-logits (scripts/llamacpp_logits.c) on MODEL.f32.gguf, the
#      first 16 tokens of wiki.test.raw, one thread, f32 K/V cache (llama-perplexity's default is
#      f16), so the whole pass is f32; layout in that file's header comment.
#
# Token file format (text, one item per line, "key value"):
#   RQTOKGOLD 1
#   provenance.llama_cpp <text>          provenance.model <file> sha256=<hex>
#   provenance.text <file> sha256=<hex> bytes=<n>
#   provenance.tokenize <flags>           provenance.command <exact command>
#   n_tokens <N>
#   first_ids <K>                         then K ids, 16 per line, space-separated
#   block_size 4096
#   blocks <B>                            then B lines "<i> <hash>": FNV-1a 64 (offset basis
#                                         cbf29ce484222325, prime 100000001b3), as 16 lowercase hex
#                                         digits, over the ids of block i as little-endian int32;
#                                         block i is ids [4096 i, min(4096 (i+1), N))
#   end
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${REPLIQ_CACHE:-$HOME/.cache/repliq}
DATA=${REPLIQ_DATA:-$REPO/../shared/data}
OUT=$REPO/tests/fixtures/golden
LCP_VERSION=0.3.16
PROV_LLAMA="llama.cpp 4227c9be4268ac844921b90f31595f81236bd317 as vendored in llama-cpp-python $LCP_VERSION (sdist sha256 34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6), built by scripts/build-llamacpp.sh"
TEXTS=(wiki.test wiki.valid)
LOGITS_TOKENS=16
PYTHON=${PYTHON:-python3}

die() { echo "make_golden: error: $*" >&2; exit 1; }
log() { echo "make_golden: $*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2-135m qwen2.5-coder-1.5b)
for m in "${models[@]}"; do
    case $m in smollm2-135m | qwen2.5-coder-1.5b) ;; *) die "unknown model '$m'";; esac
    [ -f "$CACHE/$m.gguf" ] || die "$CACHE/$m.gguf missing; fetch the packaged model first"
done
for t in "${TEXTS[@]}"; do
    [ -f "$DATA/$t.raw" ] || die "$DATA/$t.raw missing; set REPLIQ_DATA to the folder with WikiText-2 raw"
done

BIN=$(dirname "$("$REPO/scripts/build-llamacpp.sh" | head -n1)")
for t in llama-quantize llama-tokenize llama-perplexity rq-llamacpp-logits; do
    [ -x "$BIN/$t" ] || die "$BIN/$t missing; run scripts/build-llamacpp.sh"
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The text exactly as llama-perplexity's -f holds it: one trailing '\n' removed.
for t in "${TEXTS[@]}"; do
    if [ "$(tail -c1 "$DATA/$t.raw" | od -An -c | tr -d ' ')" = '\n' ]; then
        head -c -1 "$DATA/$t.raw" > "$WORK/$t.raw"
    else
        cp "$DATA/$t.raw" "$WORK/$t.raw"
    fi
done

make_f32() {  # $1 model name
    local src=$CACHE/$1.gguf dst=$CACHE/$1.f32.gguf src_sha
    src_sha=$(sha "$src")
    if [ -f "$dst" ] && [ "$(cat "$dst.src" 2>/dev/null)" = "$src_sha" ]; then return 0; fi
    log "$1: llama-quantize -> $dst"
    "$BIN/llama-quantize" --allow-requantize "$src" "$dst.tmp" F32 > "$WORK/quantize.log" 2>&1 ||
        { tail -20 "$WORK/quantize.log" >&2; die "llama-quantize failed for $src"; }
    mv "$dst.tmp" "$dst"
    echo "$src_sha" > "$dst.src"
}

# Writes the token golden file from llama-tokenize's "[1, 2, 3]" output.
write_tokens() {  # $1 ids file, $2 out, then provenance: llama model text text_sha text_bytes tokenize command
    "$PYTHON" - "$@" <<'EOF'
import os, struct, sys
ids_file, out, llama, model, text, text_sha, text_bytes, tokenize, command = sys.argv[1:10]
raw = open(ids_file).read().strip()
if not (raw.startswith("[") and raw.endswith("]")):
    sys.exit("make_golden: llama-tokenize output is not a [..] id list")
ids = [int(x) for x in raw[1:-1].split(",") if x.strip()]
def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h
B, K = 4096, min(512, len(ids))
lines = ["RQTOKGOLD 1",
         "provenance.llama_cpp " + llama,
         "provenance.model " + model,
         "provenance.text %s sha256=%s bytes=%s" % (text, text_sha, text_bytes),
         "provenance.tokenize " + tokenize,
         "provenance.command " + command,
         "n_tokens %d" % len(ids),
         "first_ids %d" % K]
lines += [" ".join(map(str, ids[i:i + 16])) for i in range(0, K, 16)]
blocks = [ids[i:i + B] for i in range(0, len(ids), B)]
lines += ["block_size %d" % B, "blocks %d" % len(blocks)]
lines += ["%d %016x" % (i, fnv1a64(struct.pack("<%di" % len(b), *b))) for i, b in enumerate(blocks)]
lines.append("end")
with open(out + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(out + ".tmp", out)
print("make_golden: wrote %s: %d tokens, %d blocks" % (out, len(ids), len(blocks)), file=sys.stderr)
EOF
}

# The ids llama-perplexity really uses (first chunk of 512) must start the golden list.
check_against_perplexity() {  # $1 model file, $2 text, $3 golden file
    local kld=$WORK/kld.bin
    "$BIN/llama-perplexity" -m "$1" -f "$DATA/$2.raw" -c 512 -b 512 --chunks 1 -t 2 \
        --kl-divergence-base "$kld" > "$WORK/ppl-check.log" 2>&1 ||
        { tail -20 "$WORK/ppl-check.log" >&2; die "llama-perplexity check run failed"; }
    "$PYTHON" - "$kld" "$3" <<'EOF'
import struct, sys
kld, gold = sys.argv[1:3]
with open(kld, "rb") as f:
    magic = f.read(8)
    n_ctx, n_vocab, n_chunk = struct.unpack("<3i", f.read(12))
    ppl_ids = list(struct.unpack("<%di" % (n_ctx * n_chunk), f.read(4 * n_ctx * n_chunk)))
assert magic == b"_logits_", magic
lines = open(gold).read().split("\n")
k = int(next(l for l in lines if l.startswith("first_ids ")).split()[1])
start = lines.index("first_ids %d" % k) + 1
gold_ids = [int(x) for l in lines[start:start + (k + 15) // 16] for x in l.split()]
n = min(len(gold_ids), len(ppl_ids))
if gold_ids[:n] != ppl_ids[:n]:
    i = next(i for i in range(n) if gold_ids[i] != ppl_ids[i])
    sys.exit("make_golden: %s differs from llama-perplexity's ids at %d: %d vs %d"
             % (gold, i, gold_ids[i], ppl_ids[i]))
print("make_golden: %s: first %d ids equal llama-perplexity's" % (gold, n), file=sys.stderr)
EOF
    rm -f "$kld"
}

for m in "${models[@]}"; do
    src=$CACHE/$m.gguf
    src_sha=$(sha "$src")
    make_f32 "$m"
    f32=$CACHE/$m.f32.gguf
    f32_sha=$(sha "$f32")

    for t in "${TEXTS[@]}"; do
        gold=$OUT/tokens-$m-$t.txt
        cmd="llama-tokenize -m $m.gguf -f $t.raw(minus one trailing newline) --ids --no-escape --no-parse-special --log-disable"
        add_bos=$("$PYTHON" -c 'import gguf,sys
r=gguf.GGUFReader(sys.argv[1]); f=r.fields.get("tokenizer.ggml.add_bos_token")
print(int(bool(f.parts[f.data[0]][0])) if f else "unset")' "$src")
        log "$m: tokenizing $t.raw"
        "$BIN/llama-tokenize" -m "$src" -f "$WORK/$t.raw" --ids --no-escape --no-parse-special \
            --log-disable > "$WORK/ids.txt" || die "llama-tokenize failed on $t.raw"
        write_tokens "$WORK/ids.txt" "$gold" "$PROV_LLAMA" "$m.gguf sha256=$src_sha" "$t.raw" "$(sha "$DATA/$t.raw")" \
            "$(stat -c %s "$DATA/$t.raw")" \
            "add_special=1 parse_special=0 (as llama-perplexity) tokenizer.ggml.add_bos_token=$add_bos; text read like common -f: one trailing newline dropped" \
            "$cmd"
        check_against_perplexity "$src" "$t" "$gold"
    done

    log "$m: logits of the first $LOGITS_TOKENS tokens of wiki.test.raw"
    "$BIN/rq-llamacpp-logits" -m "$f32" -o "$OUT/logits-$m.bin" -f "$DATA/wiki.test.raw" \
        -n "$LOGITS_TOKENS" -t 1 --kv f32 \
        --prov "model_sha256=$f32_sha" \
        --prov "model_source=$m.gguf sha256=$src_sha, converted with llama-quantize --allow-requantize $m.gguf $m.f32.gguf F32" \
        --prov "text=wiki.test.raw sha256=$(sha "$DATA/wiki.test.raw")" \
        --prov "command=rq-llamacpp-logits -m $m.f32.gguf -o logits-$m.bin -f wiki.test.raw -n $LOGITS_TOKENS -t 1 --kv f32 (scripts/make_golden.sh)"
    # Its ids must be the first ids of the token golden.
    "$PYTHON" - "$OUT/logits-$m.bin" "$OUT/tokens-$m-wiki.test.txt" <<'EOF'
import struct, sys
with open(sys.argv[1], "rb") as f:
    hdr = f.read(40)
    assert hdr[:8] == b"RQLOGITS", hdr[:8]
    n_tok, prov_len = struct.unpack("<I", hdr[16:20])[0], struct.unpack("<I", hdr[36:40])[0]
    f.seek(40 + prov_len)
    ids = list(struct.unpack("<%di" % n_tok, f.read(4 * n_tok)))
lines = open(sys.argv[2]).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("first_ids ")) + 1
gold = [int(x) for l in lines[start:start + 2] for x in l.split()]
if ids != gold[:n_tok]:
    sys.exit("make_golden: logits ids %s != token golden %s" % (ids, gold[:n_tok]))
EOF
done
ls -l "$OUT" >&2
