#!/usr/bin/env python3
"""Write the golden dequantization fixtures in tests/fixtures/dequant/.

Each fixture holds packed blocks of one ggml type and the f32 values that the
gguf PyPI package's NumPy dequantizer (gguf.quants.dequantize) makes of them, so
tests/test_dequant.c checks repliq against an independent implementation. The
blocks are real ones taken from the packaged models where the type occurs there,
followed by seeded pseudo-random blocks whose f16 scales are finite.

File format, version 1 (all numbers little-endian):
    RQDQ 1\\n                                      magic and version
    type <id> <name> <block_size> <type_size>\\n   ids and sizes as gguf-py has them
    values <n>\\n                                  n is a whole number of blocks
    provenance <one line of text>\\n
    end\\n
    <n / block_size * type_size bytes of blocks>
    <n float32 expected values>

Usage: scripts/make_dequant_fixtures.py [--smollm2 PATH] [--qwen PATH] [--out DIR]
"""
import argparse
import importlib.metadata
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

MAGIC = b"RQDQ"
VERSION = 1
SEED = 20240611

# type -> (blocks taken from models, random blocks, byte offsets of f16 scales)
FORMATS = {
    T.F32: (1024, 1024, ()),
    T.F16: (0, 1024, ()),
    T.BF16: (0, 1024, ()),
    T.Q4_0: (0, 32, (0,)),
    T.Q4_1: (16, 16, (0, 2)),
    T.Q5_0: (0, 32, (0,)),
    T.Q5_1: (0, 32, (0, 2)),
    T.Q8_0: (16, 16, (0,)),
    T.Q2_K: (0, 8, (80, 82)),
    T.Q3_K: (0, 8, (108,)),
    T.Q4_K: (4, 4, (0, 2)),
    T.Q5_K: (0, 8, (0, 2)),
    T.Q6_K: (4, 4, (208,)),
    T.IQ4_NL: (0, 32, (0,)),
    # the i-quants; no packaged model has them. iq1_m has no f16 at a fixed
    # offset: its d is spread over the scales (see IQ1_M_SCALES).
    T.IQ2_XXS: (0, 16, (0,)),
    T.IQ2_XS: (0, 16, (0,)),
    T.IQ3_XXS: (0, 16, (0,)),
    T.IQ1_S: (0, 16, (0,)),
    T.IQ3_S: (0, 16, (0,)),
    T.IQ2_S: (0, 16, (0,)),
    T.IQ4_XS: (0, 16, (0,)),
    T.IQ1_M: (0, 16, ()),
}

# The first ORIGINAL formats draw their random blocks from one stream in type-id
# order, as their fixtures were first made; each format listed after them has a
# stream of its own, default_rng([SEED, type id]), so adding one changes no other
# fixture. New formats go at the end.
ORIGINAL = 13

# iq1_m: bits 12..15 of the u16 at 48 + 2k are bits 4k..4k+3 of the f16 d.
IQ1_M_SCALES = 48


def draw_plan():
    """(type, generator, how the provenance names it) in the order they are drawn."""
    listed = list(FORMATS)
    shared = np.random.default_rng(SEED)
    plan = [(q, shared, f"default_rng({SEED}) in type-id order") for q in sorted(listed[:ORIGINAL], key=int)]
    plan += [(q, np.random.default_rng([SEED, int(q)]), f"default_rng([{SEED}, {int(q)}])")
             for q in listed[ORIGINAL:]]
    return plan


def ggml_name(qtype):
    """The name ggml gives a type: lower case except the k-quants' capital K."""
    name = qtype.name.lower()
    return name[:-2] + "_K" if name.endswith("_k") else name


def random_f16_scales(rng, count):
    """Finite f16 values: half of typical weight-scale size, half any finite bit
    pattern (zeros, subnormals and the largest values included)."""
    typical = (rng.standard_normal(count) * 2.0 ** rng.integers(-12, -2, count)).astype(np.float16)
    bits = rng.integers(0, 1 << 16, count, dtype=np.uint32).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] ^= 0x4000  # exponent 31 (inf, nan) -> 15
    anyf = bits.view(np.float16)
    return np.where(rng.random(count) < 0.5, typical, anyf).astype(np.float16)


def random_blocks(rng, qtype, nblocks):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        bits = rng.integers(0, 1 << 32, nblocks, dtype=np.uint64).astype(np.uint32)
        bits[(bits & 0x7F800000) == 0x7F800000] ^= 0x40000000  # keep them finite
        return bits.view(np.uint8)
    if qtype == T.F16:
        return random_f16_scales(rng, nblocks).view(np.uint8)
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, nblocks, dtype=np.uint32).astype(np.uint16)
        bits[(bits & 0x7F80) == 0x7F80] ^= 0x4000
        return bits.view(np.uint8)
    blocks = rng.integers(0, 256, (nblocks, type_size), dtype=np.uint16).astype(np.uint8)
    for off in FORMATS[qtype][2]:
        blocks[:, off:off + 2] = random_f16_scales(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
    if qtype == T.IQ1_M:
        d = random_f16_scales(rng, nblocks).view(np.uint16)
        sc = blocks[:, IQ1_M_SCALES:IQ1_M_SCALES + 8].copy().view("<u2")
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
        blocks[:, IQ1_M_SCALES:IQ1_M_SCALES + 8] = sc.view(np.uint8)
    return blocks.reshape(-1)


def real_blocks(models, qtype, nblocks):
    """nblocks of this type from the models: the first half from the start of the
    first tensor of that type, the rest from the middle of the last one."""
    if nblocks == 0:
        return np.zeros(0, np.uint8), ""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    for path, reader in models:
        tensors = [t for t in reader.tensors if t.tensor_type == qtype]
        if not tensors:
            continue
        first, last = tensors[0], tensors[-1]
        n1 = nblocks // 2
        n2 = nblocks - n1
        raw1 = np.asarray(first.data).reshape(-1).view(np.uint8)
        raw2 = np.asarray(last.data).reshape(-1).view(np.uint8)
        count = last.n_elements // block_size
        if first.n_elements // block_size < n1 or count < n2:
            sys.exit(f"{qtype.name} tensors in {path} are too small for {nblocks} blocks")
        mid = min(count // 2, count - n2)
        part1 = raw1[: n1 * type_size]
        part2 = raw2[mid * type_size:(mid + n2) * type_size]
        unit = "values" if block_size == 1 else "blocks"
        where = (f"{unit} 0-{n1 - 1}: {unit} 0-{n1 - 1} of {first.name}, {unit} {n1}-{nblocks - 1}: "
                 f"{unit} {mid}-{mid + n2 - 1} of {last.name}, in {os.path.basename(path)} "
                 f"({os.path.getsize(path)} bytes)")
        return np.concatenate([part1, part2]), where
    sys.exit(f"no {qtype.name} tensor in the given models; pass the model that has one")


def write_fixture(out_dir, qtype, models, rng, versions, draw):
    n_real, n_random, _ = FORMATS[qtype]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    real, where = real_blocks(models, qtype, n_real)
    rand = random_blocks(rng, qtype, n_random)
    data = np.concatenate([real, rand]).astype(np.uint8)
    nblocks = n_real + n_random
    assert data.size == nblocks * type_size
    expected = gguf.quants.dequantize(data, qtype).astype(np.float32, copy=False).reshape(-1)
    assert expected.size == nblocks * block_size

    parts = [where] if where else []
    if block_size == 1:
        parts.append(f"values {n_real}-{nblocks - 1}: random finite {ggml_name(qtype)} bit patterns, "
                     f"numpy {draw}")
    else:
        parts.append(f"blocks {n_real}-{nblocks - 1}: random bytes, finite f16 scales, "
                     f"numpy {draw}")
    prov = (f"expected values by gguf.quants.dequantize, {versions}; " + "; ".join(parts)
            + "; written by scripts/make_dequant_fixtures.py")
    header = (f"{MAGIC.decode()} {VERSION}\n"
              f"type {int(qtype)} {ggml_name(qtype)} {block_size} {type_size}\n"
              f"values {expected.size}\n"
              f"provenance {prov}\n"
              "end\n").encode()
    path = os.path.join(out_dir, f"{ggml_name(qtype)}.rqdq")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(data.tobytes())
        f.write(expected.astype("<f4").tobytes())
    os.replace(tmp, path)
    return path, os.path.getsize(path)


def main():
    cache = os.path.expanduser("~/.cache/repliq")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smollm2", default=os.path.join(cache, "smollm2-135m.gguf"),
                    help="SmolLM2-135M-Instruct Q4_1 GGUF (has q4_1, q8_0, f32)")
    ap.add_argument("--qwen", default=os.path.join(cache, "qwen2.5-coder-1.5b.gguf"),
                    help="Qwen2.5-Coder-1.5B Q4_K_M GGUF (has q4_K, q6_K, f32)")
    ap.add_argument("--out", default="tests/fixtures/dequant")
    args = ap.parse_args()

    models = []
    for path in (args.smollm2, args.qwen):
        if not os.path.exists(path):
            sys.exit(f"{path}: model not found; see the --smollm2 / --qwen options")
        models.append((path, gguf.GGUFReader(path)))
    versions = (f"gguf {importlib.metadata.version('gguf')}, numpy {np.__version__}")

    os.makedirs(args.out, exist_ok=True)
    total = 0
    for qtype, rng, draw in draw_plan():
        path, size = write_fixture(args.out, qtype, models, rng, versions, draw)
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
