"""The format a child writes its probe outputs in (grading/child/wire.py), as the grader reads it: plain data with
size caps, checked before anything is allocated, never a pickle."""
import json

import pytest
import torch

from grading import scoring
from grading.child import wire


def test_result_files_are_plain_data_with_size_caps():
    outputs = {"main": {"d_loss": torch.tensor(1.5), "z": [torch.randn(3, 4)], "y": [None, torch.arange(3)],
                        "first_g": 1, "error": "text"}}
    back = wire.decode(wire.encode(outputs))
    assert back["main"]["first_g"] == 1 and back["main"]["error"] == "text" and back["main"]["y"][0] is None
    assert torch.equal(back["main"]["z"][0], outputs["main"]["z"][0]) and back["main"]["y"][1].dtype == torch.int64
    # A tiny file that claims a huge tensor, or points outside itself, is refused before anything is allocated.
    for spec in (["f32", [1 << 30], 0], ["f32", [1 << 20, 1 << 20], 0], ["f32", [4], 1 << 40], ["pickle", [], 0]):
        with pytest.raises(ValueError):
            wire.decode(json.dumps({"x": {"tensor": spec}}).encode() + b"\n" + bytes(16))
    with pytest.raises(ValueError):
        wire.decode(b"{" * (2 << 20))  # no header within the cap


def test_the_grader_never_unpickles_what_a_child_wrote():
    import pickle

    from grading.child import wire

    assert "unreadable results" in scoring.decode(wire.unframe(wire.frame(pickle.dumps({"main": bytearray(10)}))))


def test_a_child_result_cannot_claim_more_memory_than_its_bytes():
    body = bytes(64)
    overlapping = {f"x{i}": {"tensor": ["f32", [16], 0]} for i in range(2)}
    with pytest.raises(ValueError, match="overlap"):
        wire.decode(json.dumps(overlapping).encode() + b"\n" + body)
    many = [{"tensor": ["f32", [0], 0]}] * (wire.MAX_TENSORS + 1)
    with pytest.raises(ValueError, match="more than"):
        wire.decode(json.dumps(many).encode() + b"\n")
    fine = wire.encode({"a": torch.ones(4), "b": [torch.zeros(2, 3)] * 3})
    assert wire.decode(wire.unframe(wire.frame(fine)))["b"][2].shape == (2, 3)
    for bad in (wire.frame(fine)[:-1], wire.frame(fine) + b"x", fine):
        with pytest.raises(ValueError):
            wire.unframe(bad)
