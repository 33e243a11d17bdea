"""Per-tensor layer-error records (`repliq inspect layers --json`, quantize's
`*.tensors.jsonl`), read for scripts/layer_compare.py and scripts/offset_share.py."""
import json
import sys


def load(path, tool, fields):
    """{name: (field, ...)} as floats from a JSON-lines file; blank lines skipped; exits
    with tool's name, the file and the line on anything else"""
    out = {}
    try:
        lines = open(path).readlines()
    except OSError as e:
        sys.exit(f"{tool}: cannot read {path}: {e.strerror}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            t = json.loads(line)
            out[str(t["name"])] = tuple(float(t[f]) for f in fields)
        except (ValueError, KeyError, TypeError) as e:
            sys.exit(f"{tool}: {path}:{n}: not a record with {', '.join(fields)} ({type(e).__name__}: {e})")
    return out


def layer_type(name):
    """attn_q, ffn_down, ... for blk.N.TYPE.weight; the whole name otherwise"""
    parts = name.split(".")
    return parts[2] if len(parts) > 3 and parts[0] == "blk" else name
