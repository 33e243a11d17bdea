#!/usr/bin/env bash
# repliq ppl against llama-perplexity on the same F32 GGUF, same text, context and
# thread count, run one after the other on this machine (llama-perplexity with its
# defaults: batch 2048 = 4 chunks at once, f16 K/V). Validates first: both must
# have evaluated the same number of chunks and agree on PPL within 0.1%; then
# prints one JSON line: tokens/s of each, their ratio, PPLs, peak RSS, machine.
# usage: bench/bench_ppl.sh [F32_GGUF] [CHUNKS (0 = all)] [THREADS]
# Needs scripts/build-llamacpp.sh and scripts/make_golden.sh to have run (F32 file).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${REPLIQ_CACHE:-$HOME/.cache/repliq}
model=${1:-$cache/smollm2-135m.f32.gguf}
chunks=${2:-0}; threads=${3:-2}
data=${REPLIQ_DATA:?set REPLIQ_DATA}
lp=$cache/llama.cpp-0.3.16/build/bin/llama-perplexity
[ -x "$lp" ] || { echo "bench_ppl: $lp missing; run scripts/build-llamacpp.sh" >&2; exit 1; }
[ -f "$model" ] || { echo "bench_ppl: $model missing; run scripts/make_golden.sh" >&2; exit 1; }
make -s build/repliq
out=$(mktemp -d)
ch=(); [ "$chunks" -gt 0 ] && ch=(--chunks "$chunks")
/usr/bin/time -f '%M' -o "$out/rq.rss" build/repliq ppl -m "$model" -f "$data/wiki.test.raw" -c 512 -t "$threads" \
    "${ch[@]}" --quiet --json-out "$out/rq.json" >"$out/rq.txt"
/usr/bin/time -f '%M' -o "$out/lp.rss" "$lp" -m "$model" -f "$data/wiki.test.raw" -c 512 -t "$threads" \
    "${ch[@]}" >"$out/lp.txt" 2>&1
python3 - "$out" <<'PY'
import json, re, sys, platform, os
d = sys.argv[1]
rq = json.load(open(f"{d}/rq.json"))
lp = open(f"{d}/lp.txt").read()
m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", lp)
n = re.search(r"prompt eval time =\s*([0-9.]+) ms /\s*(\d+) tokens", lp)
chunks = re.search(r"calculating perplexity over (\d+) chunks", lp)
if not (m and n and chunks):
    sys.exit("bench_ppl: could not parse llama-perplexity output in " + d)
lp_tps = int(n.group(2)) / (float(n.group(1)) / 1000)
if int(chunks.group(1)) != rq["chunks"]:
    sys.exit(f"bench_ppl: chunk counts differ: llama.cpp {chunks.group(1)} repliq {rq['chunks']}")
if abs(rq["ppl"] / float(m.group(1)) - 1) > 1e-3:
    sys.exit(f"bench_ppl: PPLs differ by more than 0.1%: repliq {rq['ppl']} llama.cpp {m.group(1)}")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"bench": "ppl", "model": rq["model"], "text": rq["text"], "ctx": 512, "chunks": rq["chunks"],
    "threads": rq["threads"], "repliq_tokens_per_s": round(rq["tokens_per_second"], 1),
    "llamacpp_tokens_per_s": round(lp_tps, 1), "ratio": round(rq["tokens_per_second"] / lp_tps, 3),
    "repliq_ppl": rq["ppl"], "llamacpp_ppl": float(m.group(1)),
    "ppl_rel_diff": abs(rq["ppl"] - float(m.group(1))) / float(m.group(1)),
    "repliq_peak_rss_mib": int(open(f"{d}/rq.rss").read()) // 1024,
    "llamacpp_peak_rss_mib": int(open(f"{d}/lp.rss").read()) // 1024,
    "machine": f"{platform.machine()} {os.cpu_count()} cores, {cpu}"}))
PY
rm -rf "$out"
