"""The first thing a grading child sends: one line that says the grader's side is ready (this Python, torch, the
harness, the probes started, and how the child confined itself), written before the student's gan.py is imported.
A child that never wrote it failed before the student's code ran: the grading failed, not the student.

Only the standard library: the grader reads it before it imports torch.
"""
from __future__ import annotations

import json

_READY = b"GRADE-READY "
MAX_READY_BYTES = 4096


def line(facts: dict[str, str]) -> bytes:
    """The ready line, with ``facts`` (str keys, str values)."""
    return _READY + json.dumps(facts).encode()[:MAX_READY_BYTES - 64] + b"\n"


def split(stream: bytes) -> tuple[dict | None, bytes]:
    """(the facts of the ready line, what follows it), or (None, stream) if the stream does not start with one."""
    newline = stream.find(b"\n", 0, MAX_READY_BYTES)
    if not stream.startswith(_READY) or newline < 0:
        return None, stream
    try:
        facts = json.loads(stream[len(_READY):newline])
    except ValueError:
        return None, stream
    if not isinstance(facts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items()):
        return None, stream
    return facts, stream[newline + 1:]
