"""The IDX loader: valid files, the search order, and one clear DataError for each kind of damage."""
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codebase import data
from codebase.data import DataError, load_fashion_mnist, to_unit_range
from synthetic import idx_bytes, make_dataset, write_split

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data reachable: empty cwd, no env var, no Debian folder, no download."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")

    def offline(root):
        raise DataError("offline")

    monkeypatch.setattr(data, "download_fashion_mnist", offline)
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_loads_valid_files(isolated, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = np.arange(12, dtype=np.uint8) % 10
    write_split(isolated / "d", "train", images, labels, gz=gz)
    x, y = load_fashion_mnist("train", isolated / "d")
    assert x.dtype == torch.uint8 and x.shape == (12, 28, 28)
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels) and y.dtype == torch.int64


def test_to_unit_range():
    x = torch.tensor([[0, 255], [127, 128]], dtype=torch.uint8).expand(1, 2, 2)
    torch.testing.assert_close(to_unit_range(x), torch.tensor([[[[-1.0, 1.0], [127 / 127.5 - 1, 128 / 127.5 - 1]]]]))


def test_search_order(isolated, monkeypatch):
    for name, n in (("flag", 11), ("env", 12), ("data", 13)):
        make_dataset(isolated / name, n_train=n, n_test=10)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(isolated / "env"))
    assert len(load_fashion_mnist("train", isolated / "flag")[0]) == 11
    assert len(load_fashion_mnist("train")[0]) == 12
    monkeypatch.delenv("FASHION_MNIST_DIR")
    assert len(load_fashion_mnist("train")[0]) == 13
    monkeypatch.setattr(data, "DEBIAN_DIR", isolated / "flag")
    (isolated / "data").rename(isolated / "gone")
    assert len(load_fashion_mnist("train")[0]) == 11  # the Debian folder comes last


def test_missing_files_name_the_fix(isolated):
    with pytest.raises(DataError) as e:
        load_fashion_mnist("train")
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "no-debian" in msg and "offline" in msg


@pytest.fixture
def other_data(isolated, monkeypatch):
    """Valid data in every default place, so that a named folder that is skipped would go unnoticed."""
    make_dataset(isolated / "data", n_train=13, n_test=10)
    make_dataset(isolated / "debian", n_train=14, n_test=10)
    monkeypatch.setattr(data, "DEBIAN_DIR", isolated / "debian")
    return isolated


def _images_only(folder: Path) -> Path:
    make_dataset(folder, n_train=12, n_test=10)
    for labels in folder.glob("*labels*"):
        labels.unlink()
    return folder


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("case, words", [
    ("missing", "no such folder"),
    ("file", "is a file, not a folder"),
    ("images only", "lacks train-labels-idx1-ubyte[.gz]"),
])
def test_a_named_folder_is_used_or_refused_never_skipped(other_data, monkeypatch, how, case, words):
    folder = {"missing": lambda: other_data / "nowhere",
              "file": lambda: other_data / "data" / "train-images-idx3-ubyte.gz",
              "images only": lambda: _images_only(other_data / "partial")}[case]()
    if how == "env":
        monkeypatch.setenv("FASHION_MNIST_DIR", str(folder))
    with pytest.raises(DataError) as e:
        load_fashion_mnist("train", folder if how == "flag" else None)
    msg = str(e.value)
    assert words in msg and str(folder) in msg
    assert ("--data_dir" if how == "flag" else "$FASHION_MNIST_DIR") in msg


def test_unreadable_files_and_folders_say_so(other_data, monkeypatch):
    make_dataset(other_data / "mine", n_train=12, n_test=10)
    real_read_bytes, real_listdir = Path.read_bytes, data.os.listdir

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", lambda self: denied() if "mine" in str(self) else real_read_bytes(self))
    with pytest.raises(DataError, match="cannot be read \\(Permission denied\\). Fix its permissions"):
        load_fashion_mnist("train", other_data / "mine")
    monkeypatch.setattr(data.os, "listdir", lambda path: denied() if "mine" in str(path) else real_listdir(path))
    with pytest.raises(DataError, match="--data_dir .*mine cannot be read \\(Permission denied\\)"):
        load_fashion_mnist("train", other_data / "mine")


def test_an_idx_file_with_no_samples_is_refused(isolated):
    write_split(isolated / "empty", "train", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(DataError, match="holds no samples"):
        load_fashion_mnist("train", isolated / "empty")


def _damage(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


GOOD_LABELS = idx_bytes(np.arange(10, dtype=np.uint8))
CASES = {
    "truncated gzip": ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(raw)[:-30], "corrupt"),
    "not gzip at all": ("train-images-idx3-ubyte.gz", lambda raw: b"this is not gzip" * 10, "corrupt"),
    "truncated data": ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(raw[:-5]), "truncated"),
    "bad magic": ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(b"\x00\x00\x09\x03" + raw[4:]), "magic"),
    "wrong count": ("train-labels-idx1-ubyte.gz", lambda raw: gzip.compress(idx_bytes(np.zeros(9, np.uint8))),
                    "9 labels"),
    "label out of range": ("train-labels-idx1-ubyte.gz",
                           lambda raw: gzip.compress(idx_bytes(np.full(10, 12, np.uint8))), "outside 0-9"),
    "labels as images": ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(GOOD_LABELS), "28x28"),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_files_raise_one_clear_error(isolated, case):
    name, damage, words = CASES[case]
    images = np.zeros((10, 28, 28), np.uint8)
    write_split(isolated / "d", "train", images, np.arange(10, dtype=np.uint8))
    path = _damage(isolated / "d", name, damage(idx_bytes(images)))
    with pytest.raises(DataError) as e:
        load_fashion_mnist("train", isolated / "d")
    assert str(path) in str(e.value) and words in str(e.value)
    assert "apt-get install dataset-fashion-mnist" in str(e.value)


def test_script_reports_damaged_data_without_traceback(tmp_path):
    make_dataset(tmp_path / "d")
    (tmp_path / "d" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    proc = subprocess.run([sys.executable, str(ROOT / "run_gan.py"), "--data_dir", str(tmp_path / "d"),
                           "--out_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "train-images-idx3-ubyte.gz" in proc.stderr
