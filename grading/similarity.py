"""Near-identical work between students, for a human to look at (never a deduction by itself).

``gan.py`` files are compared as MOSS does, on what the student wrote: each file becomes a stream of tokens with
comments, docstrings, layout and names normalised away (every name becomes ``V``; attribute names such as
``logsigmoid`` in ``F.logsigmoid`` stay, as do keywords, operators and numbers), cut into overlapping runs of
KGRAM tokens; the runs that the starter's own gan.py holds are dropped. Two files are paired when most of the
smaller one's runs are in the other (``overlap``, at least CODE_OVERLAP) and it has at least MIN_KGRAMS runs of
its own, so that stubs and one-liners never pair. Sample grids are paired when the root-mean-square difference of
their pixels (in [0, 1]) is below GRID_DISTANCE, the other grid taken as it is or as a copier might disguise it
(``disguises``: mirrored or flipped whole, or each image mirrored or flipped in place): the same grid saved again, a
few images changed, or another step of the same run; grids of one image repeated (blank, collapsed) are not
compared.
"""
from __future__ import annotations

import io
import itertools
import keyword
import re
import tokenize
import zlib

import numpy as np

KGRAM = 10
CODE_OVERLAP = 0.6  # docs/grading.md: renamed and reformatted copies 1.0; independent correct solutions 0.10-0.26
MIN_KGRAMS = 20
GRID_DISTANCE = 0.1  # independent one-epoch runs differ by 0.27-0.38 (same seed, other loss code: 0.30+);
# one run's grids 37 steps apart by 0.03, 87 steps apart by 0.065; the same grid saved again by 0
COLLAPSED_SPREAD = 8.0  # mean over pixels of their spread over the 100 images (0-255): one-epoch reference
# grids 62-69, the two collapsed WGAN-GP mistakes 0
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
         tokenize.ENDMARKER}
_FALLBACK = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")


def tokens(source: str) -> list[str]:
    """The normalised token stream of Python source (any text: what does not tokenise is split on its own)."""
    out: list[str] = []
    try:
        stream = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        stream = [tokenize.TokenInfo(tokenize.NAME if t[0].isalpha() or t[0] == "_" else tokenize.OP, t, (0, 0),
                                     (0, 0), "") for t in _FALLBACK.findall(source)]
    statement_start = True
    for tok in stream:
        if tok.type in _SKIP:
            statement_start = statement_start or tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
            continue
        if tok.type == tokenize.STRING and statement_start:  # a docstring, or a string on its own
            continue
        if tok.type == tokenize.NAME:
            keep = keyword.iskeyword(tok.string) or (out and out[-1] == ".")
            out.append(tok.string if keep else "V")
        elif tok.type == tokenize.STRING:
            out.append("S")
        else:
            out.append(tok.string)
        statement_start = False
    return out


def fingerprints(source: str, base: set[int] = frozenset()) -> set[int]:
    """The hashes of the KGRAM-token runs of ``source`` that are not in ``base``."""
    stream = tokens(source)
    runs = (" ".join(stream[i:i + KGRAM]).encode() for i in range(max(0, len(stream) - KGRAM + 1)))
    return {zlib.crc32(run) for run in runs} - set(base)


def overlap(a: set[int], b: set[int]) -> float:
    """The share of the smaller set that the other holds (0 when either is too small to judge)."""
    if min(len(a), len(b)) < MIN_KGRAMS:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def similar_code(sources: dict[str, str], starter: str) -> list[tuple[str, str, float]]:
    """The pairs of students whose gan.py files overlap by at least CODE_OVERLAP: (a, b, overlap), most alike
    first."""
    base = fingerprints(starter)
    prints = {student: fingerprints(source, base) for student, source in sources.items()}
    pairs = [(a, b, overlap(prints[a], prints[b])) for a, b in itertools.combinations(sorted(prints), 2)]
    return sorted([p for p in pairs if p[2] >= CODE_OVERLAP], key=lambda p: -p[2])


def collapsed(grid: np.ndarray) -> bool:
    """Whether a grid (302x302 uint8, the run scripts' layout) shows one image 100 times, or nearly (blank, grey,
    a collapsed generator): such grids are alike between independent students, so they are not compared."""
    images = grid[2:, 2:].reshape(10, 30, 10, 30)[:, :28, :, :28].transpose(0, 2, 1, 3).reshape(100, -1)
    return float(images.astype(np.float32).std(axis=0).mean()) < COLLAPSED_SPREAD


def disguises(grid: np.ndarray) -> list[np.ndarray]:
    """``grid`` and what a copier might make of it without training anything: mirrored or flipped as a whole, and,
    in the run scripts' 302x302 layout, each image mirrored or flipped in place."""
    found = [grid, grid[:, ::-1], grid[::-1, :], grid[::-1, ::-1]]
    if grid.shape == (302, 302):
        for axes in ((3,), (1,), (1, 3)):  # in place: across, upside down, both
            copy = grid.copy()
            cells = copy[2:, 2:].reshape(10, 30, 10, 30)
            cells[:, :28, :, :28] = np.flip(cells[:, :28, :, :28], axes)
            found.append(copy)
    return found


def similar_grids(grids: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """The pairs of students whose grids (same shape, uint8) differ by less than GRID_DISTANCE (root mean square,
    pixels in [0, 1]), one taken as it is or as any of its ``disguises``: (a, b, distance), most alike first."""
    names = sorted(grids)
    if len(names) < 2:
        return []
    variants = [disguises(grids[n]) for n in names]
    x = np.stack([v[0].reshape(-1).astype(np.float32) / 255 for v in variants])  # (N, P)
    squares = (x ** 2).sum(1)  # a disguise moves pixels, so its squares are the grid's own
    d2 = np.full((len(names), len(names)), np.inf, dtype=np.float32)
    for k in range(len(variants[0])):
        y = np.stack([v[k].reshape(-1).astype(np.float32) / 255 for v in variants])
        # float32 is enough here: its rounding (about 1e-7 of d2) is far below the threshold's 1e-2
        d2 = np.minimum(d2, np.maximum(squares[:, None] + squares[None, :] - 2 * x @ y.T, 0) / x.shape[1])
    d2 = np.minimum(d2, d2.T)
    pairs = [(names[i], names[j], float(np.sqrt(d2[i, j]))) for i, j in zip(*np.triu_indices(len(names), 1))
             if d2[i, j] < GRID_DISTANCE ** 2]
    return sorted(pairs, key=lambda p: p[2])
