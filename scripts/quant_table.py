#!/usr/bin/env python3
"""Print the markdown results table from the JSON lines of scripts/quant_table.sh
(the last line per label wins)."""
import json
import sys

rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["label"]] = r


def ppl(p):
    return f'{p["ppl"]:.3f} ± {p["ppl_stderr"]:.3f}' if p else "—"


def dnll(p):
    return f'{p["kl"]:.4f} / {p["dnll"]:+.4f} ± {p["dnll_stderr"]:.4f}' if p else "—"


print("| config | bpw (linear) | file MiB | PPL llamacpp ctx512 | PPL gptq ctx2048 | KL / ΔNLL ± se (llamacpp) | "
      "KL / ΔNLL ± se (gptq) | calib. tokens | quant. time s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for label, r in rows.items():
    q, l, g = r["quant"], r["llamacpp"], r["gptq"]
    print(f'| {label} | {q["linear"]["bpw"]:.4f} | {q["file_bytes"] / 2**20:.1f} | {ppl(l)} | {ppl(g)} | {dnll(l)} | '
          f'{dnll(g)} | {q["calib_tokens"]} | {q["seconds"]:.0f} | {q["peak_rss"] / 2**20:.0f} |')
first = next(iter(rows.values()))
g = next((r["gptq"] for r in rows.values() if r["gptq"]), None)
print(f'\nllamacpp protocol: {first["llamacpp"]["chunks"]} chunks, {first["llamacpp"]["tokens"]} scored tokens; '
      + (f'gptq protocol: {g["chunks"]} windows, {g["tokens"]} scored tokens; ' if g else '')
      + f'machine: {first["machine"]}.')
