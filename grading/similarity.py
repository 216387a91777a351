"""Near-identical work between students, for a human to look at (never a deduction by itself).

``gan.py`` files are compared as MOSS does, on what the student wrote: each file becomes a stream of tokens with
comments, docstrings, layout and names normalised away (every name becomes ``V``; attribute names such as
``logsigmoid`` in ``F.logsigmoid`` stay, as do keywords, operators and numbers), cut into overlapping runs of
KGRAM tokens. The three functions are short and follow fixed formulas, so independent solutions share many runs;
what everyone shares is discounted, as Dolos's and JPlag's base-code and frequency filters do: the runs of the
starter, of the reference solution and of any known solutions (each also without its annotations and docstrings,
as bare functions), and the runs that more than max(3, COMMON_SHARE of the class) students hold. Two files are
paired when most of the smaller one's remaining runs are in the other (``overlap``, at least CODE_OVERLAP) and it
has at least MIN_KGRAMS of them, so that stubs, one-liners and textbook solutions never pair; the longest shared
fragment is named. Sample grids are paired when the root-mean-square difference of their pixels (in [0, 1]) is
below GRID_DISTANCE, the other grid taken as it is or as a copier might disguise it (``disguises``: mirrored or
flipped whole, or each image mirrored or flipped in place): the same grid saved again, a few images changed, or
another step of the same run; grids of one image repeated (blank, collapsed) are not compared.
"""
from __future__ import annotations

import ast
import collections
import io
import itertools
import keyword
import re
import tokenize
import zlib

import numpy as np

KGRAM = 15
CODE_OVERLAP = 0.7  # docs/grading.md: disguised copies 0.88-1.0; independent correct solutions up to 0.40-0.57
MIN_KGRAMS = 20
COMMON_SHARE = 0.25
GRID_DISTANCE = 0.1  # independent one-epoch runs differ by 0.27-0.38 (same seed, other loss code: 0.30+);
# one run's grids 37 steps apart by 0.03, 87 steps apart by 0.065; the same grid saved again by 0
COLLAPSED_SPREAD = 8.0  # mean over pixels of their spread over the 100 images (0-255): one-epoch reference
# grids 62-69, the two collapsed WGAN-GP mistakes 0
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
         tokenize.ENDMARKER}
_FALLBACK = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")


def _stream(source: str) -> list[tuple[str, int]]:
    """The normalised tokens of Python source (any text: what does not tokenise is split on its own), each with
    its line."""
    out: list[tuple[str, int]] = []
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
            keep = keyword.iskeyword(tok.string) or (out and out[-1][0] == ".")
            out.append((tok.string if keep else "V", tok.start[0]))
        elif tok.type == tokenize.STRING:
            out.append(("S", tok.start[0]))
        else:
            out.append((tok.string, tok.start[0]))
        statement_start = False
    return out


def tokens(source: str) -> list[str]:
    """The normalised token stream of Python source."""
    return [t for t, _ in _stream(source)]


def _runs(stream: list[str]) -> list[int]:
    return [zlib.crc32(" ".join(stream[i:i + KGRAM]).encode()) for i in range(max(0, len(stream) - KGRAM + 1))]


def fingerprints(source: str, base: set[int] = frozenset()) -> set[int]:
    """The hashes of the KGRAM-token runs of ``source`` that are not in ``base``."""
    return set(_runs(tokens(source))) - set(base)


def bare(source: str) -> str:
    """``source`` as bare functions: without annotations and docstrings (as students who drop the starter's
    type hints write it); "" if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]:
                if arg is not None:
                    arg.annotation = None
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def base_prints(sources: list[str]) -> set[int]:
    """The runs of the starter, the reference and known solutions, as written and as bare functions."""
    return set().union(*(fingerprints(s) | fingerprints(bare(s)) for s in sources)) if sources else set()


def overlap(a: set[int], b: set[int]) -> float:
    """The share of the smaller set that the other holds (0 when either is too small to judge)."""
    if min(len(a), len(b)) < MIN_KGRAMS:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def shared_fragment(source: str, shared: set[int]) -> tuple[int, int]:
    """(first line, last line) of the longest stretch of ``source`` made of runs in ``shared``."""
    stream = _stream(source)
    runs = _runs([t for t, _ in stream])
    best, start = (0, -1, -1), None
    for i, run in enumerate([*runs, None]):
        if run is not None and run in shared:
            start = i if start is None else start
        elif start is not None:
            best = max(best, (i - start, start, i - 1 + KGRAM - 1))
            start = None
    return (stream[best[1]][1], stream[best[2]][1]) if best[0] else (0, 0)


def similar_code(sources: dict[str, str], starter: str, known: list[str] = ()
                 ) -> list[tuple[str, str, float, tuple[int, int]]]:
    """The pairs of students whose gan.py files overlap by at least CODE_OVERLAP beyond what everyone shares
    (the starter, the reference and ``known`` solutions, and the runs common in the class): (a, b, overlap,
    the lines of a's gan.py of the longest fragment they share, the starter's runs aside), most alike first."""
    base = base_prints([starter, *known])
    raw = {student: fingerprints(source, fingerprints(starter)) for student, source in sources.items()}
    prints = {student: p - base for student, p in raw.items()}
    held = collections.Counter(run for p in prints.values() for run in p)
    common = {run for run, n in held.items() if n > max(3, COMMON_SHARE * len(prints))}
    prints = {student: p - common for student, p in prints.items()}
    pairs = []
    for a, b in itertools.combinations(sorted(prints), 2):
        value = overlap(prints[a], prints[b])
        if value >= CODE_OVERLAP:
            pairs.append((a, b, value, shared_fragment(sources[a], raw[a] & raw[b])))
    return sorted(pairs, key=lambda p: -p[2])


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
