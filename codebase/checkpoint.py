"""What a run is, shared by the training loop and the metrics: its settings (``Config``), its networks
(``build_models``) and its checkpoint file (``save_checkpoint``, ``load_checkpoint``).

A checkpoint is one dict ``{g, d, g_opt, d_opt, step, rng, config}``, plus ``g_ema`` when G's weights are averaged;
it is written to a temporary file and renamed, and loaded with ``weights_only=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from codebase.data import CLASSES
from codebase.network import Discriminator, Generator

NUM_CLASSES = len(CLASSES)


class TrainingError(Exception):
    """A run that cannot start or continue; the message says what to do."""


@dataclass
class Config:
    loss_type: str = "nonsaturating"
    conditional: bool = False
    num_epochs: int | None = None  # None: 1 for a new run, the saved target when resuming
    batch_size: int = 64
    lr: float = 2e-3
    dim_z: int = 64
    seed: int = 0
    device: str = "auto"
    out_dir: str = ""
    data_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    metrics: bool = True  # write metrics.json (FID, KID, class scores) when the run finishes
    amp: bool = False  # bf16 autocast for the losses, where the device computes bf16 natively (see amp_dtype)
    ema: float = 0.99  # decay of the moving average of G's weights that draws grids and metrics; 0 turns it off

    def __post_init__(self):
        if not self.out_dir:
            self.out_dir = f"out_{self.loss_type}" + ("_conditional" if self.conditional else "")


def build_models(cfg: Config, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(g, d) for a config; conditional networks take labels.

    Conv weights are stored channels-last: on the CPU this spares layout copies around
    oneDNN's convolutions (measured: a training step 1.2-1.4x faster); results and shapes are unchanged.
    """
    num_classes = NUM_CLASSES if cfg.conditional else 0
    g = Generator(cfg.dim_z, num_classes=num_classes).to(device, memory_format=torch.channels_last)
    d = Discriminator(num_classes=num_classes).to(device, memory_format=torch.channels_last)
    return g, d


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 when ``cfg.amp`` and the device has native bf16 arithmetic, else None (train in fp32).

    CPUs without AVX512-BF16 or AMX emulate bf16 and would run slower than fp32, so they keep fp32.
    """
    if not cfg.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    native = [getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported")]
    return torch.bfloat16 if any(native) else None


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cpu' and 'cuda' as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
        kept = (f"The previous checkpoint is intact: free some space, then continue with the same command plus "
                f"--resume." if path.is_file() else "Free some space (or pick another --out_dir) and start again.")
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

