"""The format in which a grading child returns its probe outputs: data only, with hard caps, never a pickle.

A file is a JSON header, one newline, then the raw little-endian bytes of every tensor in order. The header holds
the nested dicts, lists, strings, numbers and None of the outputs, with each tensor replaced by
``{"tensor": [dtype, shape, offset]}``. ``decode`` checks sizes before it allocates anything: at most
MAX_TENSORS entries, each inside the file, none overlapping another, so what it builds is never larger than the
bytes it was given; what the values mean is checked later, by checks.py. On the pipe a child writes, ``frame``
puts the length in front, so a truncated or padded result is refused whole.
Before all that, the child writes its ``ready`` line (ready.py).

Only the standard library, numpy and torch are used; the child loads this file by path next to probes.py.
"""
from __future__ import annotations

import json

import numpy as np
import torch

MAX_HEADER_BYTES = 1 << 20
MAX_TENSOR_ELEMENTS = 1 << 22  # 16 MB of float32: the largest probe output (z of 8 calls) holds 0.5 M
MAX_TENSORS = 1024  # a correct solution's outputs hold about 100
_MAGIC = b"GRADE-RESULT "
DTYPES = {"f32": (torch.float32, np.float32), "f64": (torch.float64, np.float64), "i64": (torch.int64, np.int64)}
_NAMES = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64", torch.int32: "i64"}


def encode(outputs) -> bytes:
    """Bytes of a structure of dicts (str keys), lists, str, int, float, bool, None and tensors."""
    blobs: list[bytes] = []
    offset = 0

    def walk(value):
        nonlocal offset
        if isinstance(value, torch.Tensor):
            name = _NAMES.get(value.dtype, "f32")
            array = value.detach().cpu().to(DTYPES[name][0]).contiguous().numpy()
            blobs.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
            entry = {"tensor": [name, list(array.shape), offset]}
            offset += len(blobs[-1])
            return entry
        if isinstance(value, dict):
            return {str(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return repr(value)[:200]

    header = json.dumps(walk(outputs)).encode()
    return header + b"\n" + b"".join(blobs)


def frame(data: bytes) -> bytes:
    """``data`` behind a line that gives its length."""
    return _MAGIC + str(len(data)).encode() + b"\n" + data


def unframe(stream: bytes) -> bytes:
    """What ``frame`` wrapped; ValueError unless ``stream`` is exactly one frame."""
    newline = stream.find(b"\n", 0, 40)
    if not stream.startswith(_MAGIC) or newline < 0 or not stream[len(_MAGIC):newline].isdigit():
        raise ValueError("not a framed result")
    if int(stream[len(_MAGIC):newline]) != len(stream) - newline - 1:
        raise ValueError("a result of the wrong length")
    return stream[newline + 1:]


def decode(data: bytes):
    """The structure ``encode`` wrote; ValueError for anything malformed or over a cap."""
    newline = data.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if newline < 0:
        raise ValueError("no header within the size cap")
    header = json.loads(data[:newline])
    body = memoryview(data)[newline + 1:]
    spans: list[tuple[int, int]] = []

    def walk(value, depth=0):
        if depth > 8:
            raise ValueError("nested too deeply")
        if isinstance(value, dict):
            if set(value) == {"tensor"}:
                if len(spans) >= MAX_TENSORS:
                    raise ValueError(f"more than {MAX_TENSORS} tensors")
                return _tensor(value["tensor"], body, spans)
            return {k: walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(header)


def _tensor(spec, body: memoryview, spans: list[tuple[int, int]]) -> torch.Tensor:
    if not (isinstance(spec, list) and len(spec) == 3 and spec[0] in DTYPES and isinstance(spec[1], list)
            and all(isinstance(n, int) and 0 <= n <= MAX_TENSOR_ELEMENTS for n in spec[1]) and len(spec[1]) <= 4
            and isinstance(spec[2], int)):
        raise ValueError("malformed tensor entry")
    name, shape, offset = spec
    count = int(np.prod(shape, dtype=np.int64))
    dtype = np.dtype(DTYPES[name][1]).newbyteorder("<")
    size = count * dtype.itemsize
    if count > MAX_TENSOR_ELEMENTS or offset < 0 or offset + size > len(body):
        raise ValueError("tensor outside the file or over the size cap")
    if size and any(offset < end and start < offset + size for start, end in spans):
        raise ValueError("tensors overlap")
    spans.append((offset, offset + size))
    array = np.frombuffer(body[offset:offset + size], dtype=dtype).astype(DTYPES[name][1])  # a copy, native order
    return torch.from_numpy(array.reshape(shape))
