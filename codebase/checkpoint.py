"""A run's checkpoint file (``save_checkpoint``, ``load_checkpoint``) and the RNG state it holds; the run's settings
and networks are in codebase/config.py.

A checkpoint is one dict ``{g, d, g_opt, d_opt, step, rng, config}``, plus ``g_ema`` when G's weights are averaged;
it is written to a temporary file and renamed, and loaded with ``weights_only=True``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from codebase.config import TrainingError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, then rename: an interruption never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError from its zip writer
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "the disk may be full"
        kept = ("The previous checkpoint is intact: free some space, then continue with the same command plus "
                "--resume." if path.is_file() else "Free some space (or pick another --out_dir) and start again.")
        raise TrainingError(f"could not write {path} ({reason}). {kept}") from None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; a damaged file raises TrainingError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"no checkpoint at {path}. Train first, or check the folder's name.") from None
    except Exception as e:
        raise TrainingError(f"{path} is not a readable checkpoint ({type(e).__name__}). Train the run again: its "
                            f"run script with --overwrite starts it afresh.") from None
    if not isinstance(state, dict) or not {"g", "d", "g_opt", "d_opt", "step", "rng", "config"} <= state.keys():
        raise TrainingError(f"{path} is not a checkpoint of this project. Train the run again: its run script "
                            f"with --overwrite starts it afresh.")
    return state


def rng_state() -> dict:
    """The torch (and CUDA) random states, for a checkpoint."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

