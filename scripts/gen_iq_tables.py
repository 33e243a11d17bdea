#!/usr/bin/env python3
"""Write the lattice grids of llama.cpp's IQ formats to $REPLIQ_CACHE/iq-grids-v1.bin.

repliq does not carry these tables in its tree (STYLE rule 10): they are generated
here from the data the gguf PyPI package holds (each IQ class's grid_hex, grid_map
and grid_shape in gguf.quants), checked against that package's own decoded grid,
and read by src/dequant_iq.c at run time.

File format, version 1 (all integers little-endian u32):
    "RQIQ"                     magic, 4 bytes
    version                    1
    count                      number of grids that follow
    then per grid:
      name[16]                 ASCII, NUL-padded: iq2xxs iq2xs iq2s iq3xxs iq3s iq1s
      width                    bytes per grid entry (8 or 4): one byte per value
      entries                  number of entries
      nbytes                   width * entries
      data[nbytes]             entry e, value j at byte e*width + j; the byte is the
                               lattice value itself (as in ggml's packed uint64/uint32
                               grids), two's complement for iq1s's -1, 0, 1

The file is written to a temporary name and renamed when complete; its sha256 is
printed. Usage: scripts/gen_iq_tables.py [--out PATH] [--check]
"""
import argparse
import hashlib
import importlib.metadata
import os
import struct
import sys

import numpy as np

from gguf import quants

MAGIC = b"RQIQ"
VERSION = 1
NAME_LEN = 16

# grid name in the file -> the gguf.quants class that holds it
GRIDS = (
    ("iq2xxs", "IQ2_XXS"),
    ("iq2xs", "IQ2_XS"),
    ("iq2s", "IQ2_S"),
    ("iq3xxs", "IQ3_XXS"),
    ("iq3s", "IQ3_S"),
    ("iq1s", "IQ1_S"),
)


def decode(cls):
    """The grid as an [entries, width] int array, from the class's hex data: every
    byte of the hex string holds 8 // bits values of `bits` bits each (low bits
    first), each an index into grid_map."""
    levels = np.array(cls.grid_map, dtype=np.int64)
    bits = int(len(levels) - 1).bit_length()
    per_byte = 8 // bits
    packed = np.frombuffer(bytes.fromhex(cls.grid_hex.decode()), dtype=np.uint8).astype(np.int64)
    shifts = np.arange(per_byte) * (8 // per_byte)
    idx = (packed[:, None] >> shifts[None, :]) & ((1 << bits) - 1)
    return levels[idx.reshape(-1)].reshape(cls.grid_shape)


def build():
    out = [MAGIC, struct.pack("<II", VERSION, len(GRIDS))]
    for name, cls_name in GRIDS:
        cls = getattr(quants, cls_name)
        grid = decode(cls)
        # cross-check against the package's own decoding of the same data
        cls.init_grid()
        if not np.array_equal(grid.astype(np.float32), np.asarray(cls.grid).reshape(cls.grid_shape)):
            sys.exit(f"{cls_name}: decoded grid differs from gguf.quants' own; not writing")
        entries, width = grid.shape
        data = grid.astype(np.int8 if grid.min() < 0 else np.uint8).tobytes()
        out.append(struct.pack(f"<{NAME_LEN}sIII", name.encode(), width, entries, len(data)))
        out.append(data)
    return b"".join(out)


def main():
    cache = os.environ.get("REPLIQ_CACHE") or os.path.expanduser("~/.cache/repliq")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(cache, "iq-grids-v1.bin"))
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 0 if --out exists and matches what would be written")
    args = ap.parse_args()

    blob = build()
    digest = hashlib.sha256(blob).hexdigest()
    if os.path.exists(args.out):
        with open(args.out, "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == digest
        if same:
            print(f"{args.out}: up to date, sha256 {digest}")
            return
    if args.check:
        sys.exit(f"{args.out}: missing or differs from the tables in gguf "
                 f"{importlib.metadata.version('gguf')}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(blob)} bytes from gguf {importlib.metadata.version('gguf')}, "
          f"sha256 {digest}")


if __name__ == "__main__":
    main()
