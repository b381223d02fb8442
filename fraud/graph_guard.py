"""Resource caps and safe readers for graph files, checked *before* anything sized by the file is allocated.

A graph file is untrusted: a 100 KB ``.npz`` can declare a (10**12,) array in its header, compress
gigabytes of zeros, or put an ``edge_type`` of 10**12 that would make one relation per id. Every size
that comes from a file is checked here against a cap first:

* decoded bytes of all arrays in an ``.npz`` (from the ``.npy`` headers, no data read) or a ``.mat``
  (streamed zlib decompression, stopped at the cap): ``MAX_DECODED_BYTES`` (``FINLLM_MAX_GRAPH_MB``,
  default 512 MB);
* nodes ``MAX_NODES``, edges ``MAX_EDGES``, feature width ``MAX_FEATURES``, relations ``MAX_RELATIONS``,
  node id / relation name length ``MAX_NAME_CHARS`` (the store keeps node ids in 64 characters);
* dtypes: features, labels, edges, edge types and masks must be numbers or booleans (text and object
  arrays are refused; ``allow_pickle`` is never set).

scipy's MATLAB reader can crash the interpreter (SIGSEGV) on some corrupt files, so :func:`read_mat`
runs it in a forked child and turns a crash into a DataError.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from finllm.errors import DataError

MAX_NODES = 50_000_000
MAX_EDGES = 500_000_000
MAX_FEATURES = 100_000
MAX_RELATIONS = 256
MAX_NAME_CHARS = 64
MAX_DECODED_BYTES = int(float(os.environ.get("FINLLM_MAX_GRAPH_MB", "512")) * 2**20)

_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


def check_count(p: Path, what: str, value: int, cap: int, hint: str = "") -> None:
    """DataError when ``value`` (a count read from the file) exceeds ``cap``."""
    if value > cap:
        raise DataError(f"{p}: {what} {value:,} exceeds the limit of {cap:,}{hint}")


def check_numeric(p: Path, key: str, dtype: np.dtype) -> None:
    """DataError unless ``dtype`` is bool / int / float (text, object, complex, dates refused)."""
    if dtype.kind not in _NUMERIC_KINDS:
        what = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers",
                "M": "dates", "m": "time deltas", "V": "raw records"}.get(dtype.kind, str(dtype))
        raise DataError(f"{p}: {key} holds {what} (dtype {dtype.str}); expected numbers")


def check_names(p: Path, key: str, names: list[str]) -> None:
    """Node ids / relation names: at most MAX_NAME_CHARS characters, unique."""
    for i, s in enumerate(names):
        if len(s) > MAX_NAME_CHARS:
            raise DataError(f"{p}: {key} entry {i} is {len(s)} characters long (limit {MAX_NAME_CHARS})")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for i, s in enumerate(names):
            if s in seen:
                raise DataError(f"{p}: {key} entry {i} ({s[:MAX_NAME_CHARS]!r}) appears twice")
            seen.add(s)


# ---- .npz -----------------------------------------------------------------------------------------
def npz_headers(p: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of every array in an ``.npz`` from the ``.npy`` headers only.

    Refuses (DataError) a member whose header is unreadable, whose declared size disagrees with the
    stored size, or a total declared size above ``MAX_DECODED_BYTES``: nothing large is allocated.
    """
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{p}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _fortran, dtype = read_header(fh, max_header_size=10_000)
                    header_len = fh.tell()
            except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types on corrupt headers
                raise DataError(f"{p}: array {key!r} has an unreadable header ({type(exc).__name__}: "
                                f"{str(exc)[:120]})") from None
            if dtype.hasobject:
                raise DataError(f"{p}: array {key!r} holds Python objects (pickled); refused, never unpickled")
            if any(d < 0 for d in shape):
                raise DataError(f"{p}: array {key!r} has a negative dimension {shape}")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes != info.file_size - header_len:
                raise DataError(f"{p}: array {key!r} declares {shape} {dtype.str} ({nbytes:,} bytes) but "
                                f"stores {max(info.file_size - header_len, 0):,} bytes (corrupt or truncated)")
            total += nbytes
            if total > MAX_DECODED_BYTES:  # read at call time: tests and users may lower it
                raise DataError(f"{p}: arrays decode to more than {MAX_DECODED_BYTES // 2**20:,} MB "
                                f"(array {key!r} is {shape}); raise FINLLM_MAX_GRAPH_MB to allow it")
            out[key] = (tuple(int(d) for d in shape), dtype)
    return out


# ---- .mat -----------------------------------------------------------------------------------------
_MI_COMPRESSED = 15


def mat_decoded_bytes(p: Path, cap: int | None = None) -> int:
    """Decoded size of a MATLAB v5 ``.mat`` file; compressed elements are inflated in a stream and
    counted, stopping (DataError) as soon as the total passes ``cap``. v7.3 (HDF5) files are refused."""
    cap = MAX_DECODED_BYTES if cap is None else cap
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(128)
        if len(head) < 128:
            raise DataError(f"{p}: not a readable MATLAB .mat file (shorter than its 128-byte header)")
        if head[126:128] not in (b"IM", b"MI"):
            if head.startswith(b"\x89HDF") or b"MATLAB 7.3" in head[:116]:
                raise DataError(f"{p}: MATLAB v7.3 (HDF5) .mat files are not supported; save with -v7")
            if head[:4] == b"\x00\x00\x00\x00" or b"MATLAB 4" in head:
                return size  # v4 files are uncompressed: the file size bounds what scipy allocates
            raise DataError(f"{p}: not a readable MATLAB .mat file (bad header)")
        endian = "<" if head[126:128] == b"IM" else ">"
        total = 128
        while True:
            tag = fh.read(8)
            if len(tag) < 8:
                break
            mtype, nbytes = struct.unpack(endian + "II", tag)
            if mtype & 0xFFFF0000:  # small data element: 4 bytes of data inside the tag
                total += 8
                continue
            if mtype != _MI_COMPRESSED:
                total += 8 + nbytes
                fh.seek(nbytes + (-nbytes % 8), os.SEEK_CUR)
                continue
            d = zlib.decompressobj()
            left = nbytes
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
                try:
                    buf = d.decompress(chunk, max(cap - total + 1, 1))
                    total += len(buf)
                    while d.unconsumed_tail and total <= cap:
                        buf = d.decompress(d.unconsumed_tail, max(cap - total + 1, 1))
                        total += len(buf)
                except zlib.error as exc:
                    raise DataError(f"{p}: not a readable MATLAB .mat file (corrupt compressed data: "
                                    f"{exc})") from None
                if total > cap:
                    raise DataError(f"{p}: contents decode to more than {cap // 2**20:,} MB; raise "
                                    f"FINLLM_MAX_GRAPH_MB to allow it")
    return total


def read_mat(p: Path) -> dict[str, object]:
    """``scipy.io.loadmat`` of ``p`` (variables only) in a forked child: a reader crash on a corrupt
    file (SIGSEGV inside scipy's C code) becomes a DataError instead of killing the command."""
    import scipy.io as sio

    if not hasattr(os, "fork"):
        return _loadmat_vars(sio, p)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: read, send the variables (or the error text) back, exit without cleanup
        code = 0
        try:
            os.close(r)
            try:
                payload: tuple[str, object] = ("ok", _loadmat_vars(sio, p))
            except Exception as exc:  # noqa: BLE001 - reported by the parent as bad input
                payload = ("error", f"{type(exc).__name__}: {str(exc)[:160]}")
            with os.fdopen(w, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001 - never return into the parent's code from the child
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as fh:
            kind, value = pickle.load(fh)  # our own child's output, never a file's bytes
    except (EOFError, pickle.UnpicklingError):
        kind, value = "crash", None
    _, status = os.waitpid(pid, 0)
    if kind == "crash" or os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else f"exit {status}"
        raise DataError(f"{p}: not a readable MATLAB .mat file (the reader crashed: {sig})")
    if kind == "error":
        raise DataError(f"{p}: not a readable MATLAB .mat file ({value})")
    return value  # type: ignore[return-value]


def _loadmat_vars(sio: object, p: Path) -> dict[str, object]:
    m = sio.loadmat(str(p))  # type: ignore[attr-defined]
    return {k: v for k, v in m.items() if not k.startswith("__")}
