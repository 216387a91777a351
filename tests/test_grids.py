"""grading/grids.py: sample grids judged by the classifier."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codebase.data import load_fashion_mnist
from codebase.outputs import save_grid_image
from grading import grids

pytestmark = pytest.mark.xdist_group("grids")  # one worker runs the module: its tests share its test set


def _png(images: torch.Tensor, tmp_path: Path) -> bytes:
    """uint8 (100, 28, 28) saved exactly as the run scripts save a grid."""
    path = tmp_path / "grid.png"
    save_grid_image(images.unsqueeze(1).float() / 127.5 - 1, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def test_set():
    images, labels = load_fashion_mnist("test")
    return images, labels


def test_a_grid_is_cut_into_the_images_it_was_saved_from(tmp_path):
    images = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(grids.cut(_png(images, tmp_path)), images)
    other = io.BytesIO()
    Image.new("L", (280, 280)).save(other, "PNG")
    with pytest.raises(grids.GridError, match="280x280 pixels, not the 302x302 grid"):
        grids.cut(other.getvalue())


def test_copies_are_found_as_a_brute_force_search_finds_them():
    g = torch.Generator().manual_seed(1)
    reals = torch.randint(0, 256, (1200, 28, 28), dtype=torch.uint8, generator=g)
    reals[:400] = reals[:400] // 8 + 100  # low contrast: many block means alike
    near = reals[5:17].clone().long()
    for k, pixels in enumerate(range(30, 42)):  # 35 pixels moved by 36 levels are within 0.03 (rms), 36 are not
        flat = near[k].view(-1)
        flat[:pixels] = torch.where(flat[:pixels] > 127, flat[:pixels] - 36, flat[:pixels] + 36)
    blocks = reals[20:22].clone()  # 8 levels more over whole 4x4 blocks: their block means are as far as they are
    for image, count in zip(blocks, (44, 45)):  # 44 blocks within 0.03, 45 not
        for b in range(count):
            image[b // 7 * 4:b // 7 * 4 + 4, b % 7 * 4:b % 7 * 4 + 4] += 8
    images = torch.cat([reals[:3], reals[3:5].flip(-1), near.to(torch.uint8), blocks,
                        torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=g),
                        reals[400:406] // 8 + 100])  # low contrast, near the first 400 in block means only
    a, r = images.numpy().astype(np.int64).reshape(len(images), -1), reals.numpy().astype(np.int64)
    mirrored = r[:, :, ::-1].reshape(len(r), -1)
    r = r.reshape(len(r), -1)
    rms = np.array([np.sqrt(min(((x - r) ** 2).mean(1).min(), ((x - mirrored) ** 2).mean(1).min())) / 255 for x in a])
    expected = rms < grids.COPY_DISTANCE
    assert expected[:5].all() and expected[5:19].tolist() == [True] * 6 + [False] * 6 + [True, False]
    assert not expected[19:].any()
    assert grids.copies(images, reals, grids.COPY_DISTANCE, chunk=500).tolist() == expected.tolist()
    assert grids.copies(images, reals, 0.0).sum() == 0 and grids.copies(images, reals, 1.01).all()


def test_real_images_look_real_and_noise_blank_and_one_class_do_not(tmp_path, test_set):
    images, labels = test_set
    real = grids.judge(_png(images[:100], tmp_path), conditional=False)
    assert real["realism"] >= 0.7 and real["classes"] >= 8 and real["healthy"]
    g = torch.Generator().manual_seed(0)
    noise = grids.judge(_png(torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8, generator=g), tmp_path), False)
    blank = grids.judge(_png(torch.zeros(100, 28, 28, dtype=torch.uint8), tmp_path), False)
    shirts = grids.judge(_png(images[labels == 0][:100], tmp_path), False)  # real, but one class only
    for scores in (noise, blank, shirts):
        assert not scores["healthy"] and scores["copies"] in (0, 100), scores
    assert noise["realism"] < grids.HEALTHY["realism"] and blank["realism"] == 0
    assert shirts["classes"] < 2


def test_column_accuracy_counts_the_images_that_show_their_columns_class(tmp_path, test_set):
    images, labels = test_set
    by_class = [images[labels == c][:10] for c in range(10)]
    columns = torch.stack(by_class, 1).reshape(100, 28, 28)  # row r, column c: the r-th image of class c
    right = grids.judge(_png(columns, tmp_path), conditional=True)
    assert right["accuracy"] >= 0.8 and right["healthy"] and len(right["columns"]) == 10
    shifted = torch.stack(by_class[1:] + by_class[:1], 1).reshape(100, 28, 28)  # column c shows class c + 1
    wrong = grids.judge(_png(shifted, tmp_path), conditional=True)
    assert wrong["accuracy"] <= 0.2 and not wrong["healthy"]
    assert "accuracy" not in grids.judge(_png(columns, tmp_path), conditional=False)


def test_training_images_are_counted_as_copies_even_mirrored_and_pasted(tmp_path, test_set):
    train, _ = load_fashion_mnist("train")
    g = torch.Generator().manual_seed(2)
    noise = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8, generator=g)
    assert grids.judge(_png(train[:100], tmp_path), False)["copies"] == 100  # real.png copied
    pasted = noise.clone()
    pasted[:7] = train[1000:1007]
    pasted[7:10] = test_set[0][:3].flip(-1)
    assert grids.judge(_png(pasted, tmp_path), False)["copies"] == 10
    assert grids.judge(_png(noise, tmp_path), False)["copies"] == 0


def test_describe_says_the_scores_and_the_verdict():
    said = grids.describe({"realism": 0.7, "classes": 9.9, "accuracy": 0.3, "copies": 0, "healthy": False})
    assert "70% of the samples" in said and "9.9 of 10 classes" in said and "30% show their column's class" in said
    assert "below what a healthy one-epoch grid reaches" in said and "copies" not in said


def test_a_cache_that_cannot_be_written_is_skipped_not_a_failure(tmp_path, monkeypatch):
    """A full disk makes torch.save raise RuntimeError ("unexpected pos"), not OSError: grids are judged all the same."""
    saved = []

    def full_disk(obj, path, *args, **kwargs):
        saved.append(path)
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 896 vs 790")

    from tests.synthetic import make_dataset

    make_dataset(tmp_path / "fmnist", n_train=128, n_test=20)  # what the data are does not matter here: its cache
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "fmnist"))
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch, "save", full_disk)
    grids.reference_data.cache_clear()
    try:
        grids.prepare()
    finally:
        grids.reference_data.cache_clear()
    assert saved and list((tmp_path / "cache").iterdir()) == []  # tried, and no partial file left behind
