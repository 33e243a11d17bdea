#!/usr/bin/env bash
# repliq bpw on the packaged SmolLM2 (Q4_1 linear layers, Q8_0 tied embeddings): the bits per
# weight it prints must equal the ones computed independently, with the gguf PyPI package when it
# is installed, else by hand (Q4_1 stores 32 weights in 20 bytes: 5 bits per weight; Q8_0 in 34:
# 8.5). Skipped when the model is not cached.
set -u
bin=${REPLIQ_BIN:-build/repliq}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

if ! "$bin" bpw >"$tmp/out" 2>"$tmp/err" && grep -q "usage: repliq bpw" "$tmp/err"; then pass test_bpw_usage
else fail test_bpw_usage "no usage message without -m"; fi

model=${REPLIQ_CACHE:-$HOME/.cache/repliq}/smollm2-135m.gguf
if [ ! -f "$model" ]; then
    for t in text json; do echo "SKIP test_bpw_smollm2_$t: smollm2-135m not cached"; done
    exit 0
fi

# Expected: linear = the 2-D blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight.
expected=$(python3 - "$model" 2>/dev/null <<'EOF'
import re, sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
lin = re.compile(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
b = n = 0
types = {}
for t in r.tensors:
    if lin.match(t.name) and len(t.shape) == 2:
        b += int(t.n_bytes); n += int(t.n_elements)
        types[t.tensor_type.name.lower()] = types.get(t.tensor_type.name.lower(), 0) + 1
print("%.10f %d %d %s" % (8 * b / n, n, b, ",".join("%s:%d" % kv for kv in sorted(types.items()))))
EOF
)
if [ -z "$expected" ]; then
    # by hand: 30 layers x (q, o: 576x576; k, v: 192x576; gate, up, down: 1536x576), all Q4_1
    n=$((30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)))
    expected="5.0000000000 $n $((n * 20 / 32)) q4_1:210"
    echo "(gguf package not importable: expected values by hand)"
fi
read -r want_bpw want_n want_bytes want_types <<<"$expected"

"$bin" bpw -m "$model" >"$tmp/text" 2>"$tmp/err"
line=$(grep '^linear layers' "$tmp/text")
printf -v want4 '%.4f' "$want_bpw"
if grep -q " $want4 bits/weight (q4_1: 210)" <<<"$line" && [ "$want_types" = q4_1:210 ]; then
    pass test_bpw_smollm2_text
else
    fail test_bpw_smollm2_text "want $want4 bits/weight ($want_types), got: $line $(head -c 200 "$tmp/err")"
fi

"$bin" bpw -m "$model" --json >"$tmp/json" 2>"$tmp/err"
if python3 - "$tmp/json" "$want_bpw" "$want_n" "$want_bytes" 2>/dev/null <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
lin, emb = j["linear"], j["embed_output"]
ok = (abs(lin["bpw"] - float(sys.argv[2])) < 1e-9 and lin["weights"] == int(sys.argv[3])
      and lin["bytes"] == int(sys.argv[4]) and lin["tensors"] == 210 and lin["types"] == {"q4_1": 210}
      and emb["tied"] is True and emb["token_embd_type"] == "q8_0" and emb["bpw"] == 8.5)
sys.exit(0 if ok else 1)
EOF
then pass test_bpw_smollm2_json
else fail test_bpw_smollm2_json "want linear bpw $want_bpw over $want_n weights, tied q8_0 embeddings; got: $(head -c 400 "$tmp/json")"; fi
