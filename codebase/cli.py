"""The run scripts' command line: flags (their defaults are Config's, codebase/config.py), their checks, and every
expected failure of a run turned into one line that names the fix.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import sys
import traceback
from pathlib import Path

import torch

from codebase.config import Config, TrainingError
from codebase.data import DataError
from codebase.train import train


# ---- Command line ----------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _batch_size(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2: the generator's batch norm needs two samples per batch")
    return value


def _ema_decay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def make_parser(description: str, loss_types: list[str] | None) -> argparse.ArgumentParser:
    """Flags shared by both run scripts; ``--loss_type`` only when ``loss_types`` is given."""
    p = argparse.ArgumentParser(description=description)
    default = Config()  # every flag's default is the run's
    if loss_types:
        p.add_argument("--loss_type", choices=loss_types, default=loss_types[0], help="default: %(default)s")
    p.add_argument("--num_epochs", type=_positive_int, default=default.num_epochs,
                   help="epochs the run trains to (default: 1 for a new run; with --resume, the run's own target)")
    p.add_argument("--batch_size", type=_batch_size, default=default.batch_size, help="default: %(default)s")
    p.add_argument("--lr", type=_positive_float, default=default.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=default.device,
                   help="auto picks cuda when available, else cpu")
    p.add_argument("--seed", type=int, default=default.seed, help="same seed, same images (default: %(default)s)")
    p.add_argument("--out_dir", default="", help="default: " + ("out_<loss_type>" if loss_types
                                                                 else "out_nonsaturating_conditional"))
    p.add_argument("--data_dir", default=default.data_dir, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out_dir")
    p.add_argument("--overwrite", action="store_true", help="start again even if --out_dir holds a run")
    p.add_argument("--no_metrics", dest="metrics", action="store_false",
                   help="skip metrics.json at the end (FID/KID of 10,000 samples; "
                        "see the README's \"Measuring sample quality\" section)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast where the CPU (AVX512-BF16, AMX) or GPU has native bf16; "
                        "see the README's \"Speed\" section first")
    p.add_argument("--ema", type=_ema_decay, default=default.ema,
                   help="decay of the moving average of G's weights that draws the grids and metrics; "
                        "0 shows G itself (default: %(default)s)")
    return p


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, **fixed) -> Config:
    """Turn parsed flags into a Config; flag combinations that cannot work get argparse's error."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch; use --device cpu (or auto)")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other; pick one")
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in fields}, **fixed)


def _raised_in(error: BaseException, filename: str) -> bool:
    return any(Path(frame.filename).name == filename for frame in traceback.extract_tb(error.__traceback__))


def describe_os_error(e: OSError, out: Path) -> str:
    """One line for a failed read or write of the run's files: what failed, why, what to do, and what is kept."""
    what = f"{e.filename}" if e.filename else f"a file in {out}"
    fixes = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space (quota exceeded)",
             errno.EROFS: "the file system is read-only: pick another --out_dir",
             errno.EACCES: "no permission: pick another --out_dir or fix the folder's permissions",
             errno.EPERM: "no permission: pick another --out_dir or fix the folder's permissions",
             errno.ENOTDIR: "a part of the path is a file, not a folder: pick another --out_dir",
             errno.EEXIST: "a file is in the way: pick another --out_dir"}
    fix = fixes.get(e.errno, "check the path and the disk")
    ckpt = out / "checkpoint.pt"
    kept = (f" The last checkpoint ({ckpt}) is intact: continue with the same command plus --resume."
            if ckpt.is_file() else "")
    return f"could not write {what} ({e.strerror or e}); {fix}.{kept}"


def main(description: str, loss_types: list[str] | None = None, **fixed) -> None:
    """Entry point of the run scripts: parse flags, train, and turn every expected failure into one message."""
    parser = make_parser(description, loss_types)
    cfg = config_from_args(parser, parser.parse_args(), **fixed)
    try:
        result = train(cfg)
    except (DataError, TrainingError) as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        if _raised_in(e, "gan.py"):  # a bug in the student's own code keeps its traceback
            raise
        sys.exit(f"error: {describe_os_error(e, Path(cfg.out_dir))}")
    except KeyboardInterrupt:
        sys.exit(f"\nstopped at once; any checkpoint in {cfg.out_dir}/ is intact (it is only ever replaced whole). "
                 f"Continue with the same command plus --resume.")
    if result["interrupted"]:
        print(f"\ninterrupted at step {result['step']}/{result['total']}; checkpoint saved in "
              f"{cfg.out_dir}/checkpoint.pt. Continue with the same command plus --resume.", file=sys.stderr)
        sys.exit(130)
    print(f"done: {result['step']} steps; sample grids, losses.csv and losses.png are in {cfg.out_dir}/")
