"""FID, KID and class scores: the torchmetrics statistics against closed forms, calibration on real Fashion-MNIST
(floor, noise, blur, same-distribution KID, classifier accuracy), the cache, python -m codebase.evaluate and its errors."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codebase import evaluate
from codebase import metrics
from codebase.classifier import ClassifierError, load_classifier
from codebase.data import DataError, load_fashion_mnist, to_unit_range
from codebase.metrics import class_report, embed, fid_kid, quantize, real_features, reference_sets
from codebase.checkpoint import save_checkpoint
from codebase.config import Config, build_models
from codebase.train import train
from synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]
N = 1000  # generated-side samples in the calibration tests; the real side is the full test split
KID_SUBSETS = 20  # of 1000 samples each; python -m codebase.evaluate draws 100

# one worker runs the module: its tests share its classifier and embeddings
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("metrics")]


# ---- Independent references ------------------------------------------------------------------------------------


def _fid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), with symmetric square roots from eigh."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def _kid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3; the cross term keeps its diagonal."""
    m, d = len(a), a.shape[1]

    def k(x, y):
        return (x @ y.T / d + 1) ** 3

    off_diagonal = ~np.eye(m, dtype=bool)
    return float(k(a, a)[off_diagonal].mean() + k(b, b)[off_diagonal].mean() - 2 * k(a, b).mean())


def test_fid_matches_closed_form_on_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5  # correlated, shifted
    got = fid_kid(torch.from_numpy(a), torch.from_numpy(b))["fid"]
    torch.testing.assert_close(got, _fid_numpy(a, b), rtol=1e-7, atol=1e-9)


def test_fid_of_two_diagonal_gaussians():
    # Diagonal covariances: FID = ||mu_a - mu_b||^2 + sum_i (s_a,i - s_b,i)^2, here 4 * 0.25 + 4 * 1 = 5.
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(40_000, 4, generator=gen, dtype=torch.float64)
    b = 2 * torch.randn(40_000, 4, generator=gen, dtype=torch.float64) + 0.5
    torch.testing.assert_close(fid_kid(a, b, kid_subsets=1)["fid"], 5.0, rtol=0.03, atol=0)


def test_kid_matches_unbiased_mmd():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 5)), rng.normal(loc=0.3, size=(60, 5))
    # One subset of all 60 samples: its draw only permutes them, so KID is exactly the MMD of the two sets.
    got = fid_kid(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=1, kid_subset_size=60)
    torch.testing.assert_close(got["kid"], _kid_numpy(a, b), rtol=1e-9, atol=1e-12)
    assert got["kid_std"] == 0


def test_kid_is_reproducible_and_leaves_the_global_rng_alone():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 4, generator=gen), torch.randn(300, 4, generator=gen) + 0.2
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = fid_kid(a, b, kid_subset_size=100), fid_kid(a, b, kid_subset_size=100)
    assert first == second
    assert torch.equal(torch.get_rng_state(), before)
    assert fid_kid(a, b, kid_subset_size=100, seed=1)["kid"] != first["kid"]


def test_class_report_by_hand():
    logits = torch.eye(10)[torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])]  # predictions 0,0,1,1,...,4,4
    y = torch.tensor([0, 1, 1, 1, 2, 2, 3, 3, 4, 4])
    report = class_report(logits, y)
    assert report["class_accuracy"] == 0.9
    assert report["per_class_accuracy"][:2] == [1.0, 2 / 3] and math.isnan(report["per_class_accuracy"][5])
    torch.testing.assert_close(report["class_spread"], 5.0)  # five equally likely classes
    assert report["predicted_share"][:6] == [0.2, 0.2, 0.2, 0.2, 0.2, 0.0]
    torch.testing.assert_close(class_report(torch.eye(10))["class_spread"], 10.0)
    assert class_report(torch.eye(10)[[3] * 7])["class_spread"] == 1.0  # total mode collapse


def test_quantize_rounds_to_png_levels():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.3, 1.0, 2.0])
    q = quantize(x)
    torch.testing.assert_close(q, to_unit_range(((q + 1) * 127.5).round().to(torch.uint8).view(1, -1)).view(-1))
    assert q[0] == -1 and q[-1] == 1 and (q - x.clamp(-1, 1)).abs().max() <= 1 / 255 + 1e-6


# ---- Calibration on real Fashion-MNIST -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def test_split():
    try:
        return load_fashion_mnist("test")
    except DataError as e:
        pytest.skip(f"real Fashion-MNIST is not installed: {e}")


@pytest.fixture(scope="module")
def test_embedding(classifier, test_split):
    """Features and logits of the 10,000 test images, computed here rather than read from the user's cache."""
    return embed(classifier, test_split[0])


@pytest.fixture(scope="module")
def real(test_embedding):
    return test_embedding[0]


@pytest.fixture(scope="module")
def scores(classifier, real):
    names = ["train split (floor)", "train, blur sigma=0.5", "train, blur sigma=1.0", "train, blur sigma=2.0",
             "Gaussian noise, std 0.5"]
    sets = reference_sets(n=N)
    return {name: metrics.evaluate_images(classifier, real, *sets[name], kid_subsets=KID_SUBSETS) for name in names}


def test_train_split_against_test_split_is_near_the_floor(scores):
    floor = scores["train split (floor)"]
    assert floor["fid"] < 2.0, floor
    assert abs(floor["kid"]) < 3 * floor["kid_std"] + 1e-4, floor


def test_noise_is_far_above_the_floor(scores):
    assert scores["Gaussian noise, std 0.5"]["fid"] > 50 * scores["train split (floor)"]["fid"]
    assert scores["Gaussian noise, std 0.5"]["kid"] > 100 * abs(scores["train split (floor)"]["kid"]) + 0.01


def test_fid_and_kid_grow_with_blur(scores):
    order = ["train split (floor)", "train, blur sigma=0.5", "train, blur sigma=1.0", "train, blur sigma=2.0"]
    fids, kids = [scores[n]["fid"] for n in order], [scores[n]["kid"] for n in order]
    assert fids == sorted(fids) and len(set(fids)) == 4, fids
    assert kids == sorted(kids) and len(set(kids)) == 4, kids


def test_kid_is_about_zero_for_two_halves_of_the_test_split(real):
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    half = fid_kid(real[perm[:5000]], real[perm[5000:]], kid_subsets=KID_SUBSETS)
    assert abs(half["kid"]) < 3 * half["kid_std"] + 1e-4, half


def test_class_accuracy_of_labelled_test_images_is_the_classifier_accuracy(classifier, test_embedding, test_split):
    report = class_report(test_embedding[1], test_split[1])
    # test_accuracy was measured by classifier.accuracy when the weights were trained
    torch.testing.assert_close(report["class_accuracy"], classifier.test_accuracy, rtol=0, atol=2e-4)
    assert classifier.test_accuracy >= 0.92
    assert 9.9 < report["class_spread"] <= 10  # the test split is balanced


def test_committed_weights_are_small_and_safe_to_load():
    path = ROOT / "codebase" / "assets" / "fmnist_classifier.pt"
    assert path.stat().st_size < 2_000_000
    state = torch.load(path, weights_only=True)
    assert {"model", "config", "test_accuracy"} <= state.keys()


# ---- Cache -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fmnist")
    make_dataset(folder, n_train=64, n_test=30)
    return folder


def test_real_features_are_cached_and_a_damaged_cache_is_rebuilt(classifier, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    first = real_features(classifier, tiny_data)
    (cached,) = (tmp_path / "cache").glob("test_features_*.pt")

    def no_forward(*args, **kwargs):
        raise AssertionError("recomputed although the cache holds the features")

    monkeypatch.setattr(metrics, "embed", no_forward)
    assert torch.equal(real_features(classifier, tiny_data), first)
    monkeypatch.undo()
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    cached.write_bytes(b"garbage")
    torch.testing.assert_close(real_features(classifier, tiny_data), first)
    assert torch.equal(torch.load(cached, weights_only=True), first)  # rewritten


# ---- Generators, runs, python -m codebase.evaluate -----------------------------------------------------------------------------


def _fake_run(folder: Path, conditional: bool, data_dir: Path) -> Path:
    """A run folder holding an untrained generator's checkpoint, as train() writes it."""
    cfg = Config(conditional=conditional, out_dir=str(folder), data_dir=str(data_dir), device="cpu")
    torch.manual_seed(0)
    g, d = build_models(cfg, torch.device("cpu"))
    folder.mkdir(parents=True)
    save_checkpoint(folder / "checkpoint.pt", {"g": g.state_dict(), "d": d.state_dict(), "g_opt": {}, "d_opt": {},
                                               "step": 7, "rng": {}, "config": vars(cfg)})
    return folder


def test_sample_is_fixed_quantized_and_keeps_the_mode():
    g, _ = build_models(Config(conditional=True), torch.device("cpu"))
    g.train()
    x, y = metrics.sample(g, 30, seed=3)
    again, _ = metrics.sample(g, 30, seed=3)
    assert g.training and torch.equal(x, again) and x.shape == (30, 1, 28, 28)
    assert y.tolist() == [i % 10 for i in range(30)]
    assert torch.equal(quantize(x), x)


def test_evaluate_run_unconditional_and_conditional(classifier, tiny_data, tmp_path):
    real = real_features(classifier, tiny_data, use_cache=False)
    plain = metrics.evaluate_run(_fake_run(tmp_path / "a", False, tiny_data), classifier, real, n=40)
    cond = metrics.evaluate_run(_fake_run(tmp_path / "b", True, tiny_data), classifier, real, n=40)
    assert plain["step"] == 7 and not plain["conditional"] and "class_accuracy" not in plain
    assert cond["conditional"] and len(cond["per_class_accuracy"]) == 10 and 0 <= cond["class_accuracy"] <= 1
    for r in (plain, cond):
        assert math.isfinite(r["fid"]) and math.isfinite(r["kid"]) and 1 <= r["class_spread"] <= 10


def test_training_writes_metrics_json_unless_told_not_to(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "DEFAULT_N", 50)
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    base = dict(batch_size=32, data_dir=str(tiny_data), device="cpu")
    train(Config(out_dir=str(tmp_path / "on"), **base))
    written = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert written["n"] == 50 and {"fid", "kid", "kid_std", "class_spread", "classifier", "seconds"} <= written.keys()
    train(Config(out_dir=str(tmp_path / "off"), metrics=False, **base))
    assert not (tmp_path / "off" / "metrics.json").exists()


def _main(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run python -m codebase.evaluate's main in this process (no interpreter start); (exit code, message) of its SystemExit."""
    monkeypatch.setattr(sys, "argv", ["evaluate", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        evaluate.main()
    return e.value.code, str(e.value.code) + capsys.readouterr().err


def test_cli_prints_runs_side_by_side(tiny_data, tmp_path, monkeypatch, capsys):
    a, b = _fake_run(tmp_path / "run_a", False, tiny_data), _fake_run(tmp_path / "run_b", True, tiny_data)
    monkeypatch.setenv("GAN_METRICS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["evaluate", str(a), f"{b}/", "--n", "40", "--data_dir", str(tiny_data),
                                      "--json", str(tmp_path / "s.json")])
    evaluate.main()
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines()[3:5]]
    assert rows == [str(a), str(b)]
    header = next(line for line in out.splitlines() if line.startswith("predicted %"))
    assert header.split()[2:] == [str(a), str(b)]
    assert "accuracy %" in out  # b is conditional
    assert set(json.loads((tmp_path / "s.json").read_text())) == {str(a), str(b)}


@pytest.mark.parametrize("damage", ["no folder", "no checkpoint", "garbage", "truncated", "not a checkpoint"])
def test_missing_or_corrupt_checkpoint_is_one_clear_error(damage, tiny_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    if damage != "no folder":
        run.mkdir()
    if damage == "garbage":
        (run / "checkpoint.pt").write_bytes(b"\x00not a torch file")
    elif damage == "truncated":
        _fake_run(tmp_path / "good", False, tiny_data)
        (run / "checkpoint.pt").write_bytes((tmp_path / "good" / "checkpoint.pt").read_bytes()[:5000])
    elif damage == "not a checkpoint":
        torch.save({"weights": torch.zeros(3)}, run / "checkpoint.pt")
    code, message = _main(monkeypatch, capsys, run, "--n", 20, "--data_dir", tiny_data, "--no_cache")
    assert message.startswith("error: ") and str(run) in message
    assert code != 0


def test_generator_of_another_shape_is_a_clear_error(tiny_data, tmp_path):
    run = _fake_run(tmp_path / "run", False, tiny_data)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["g"]["fc.0.weight"] = torch.zeros(3, 3)
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(metrics.MetricsError, match="does not fit the current networks"):
        metrics.load_generator(run)


def test_corrupt_classifier_weights_are_a_clear_error(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(ClassifierError, match="not a readable weights file"):
        load_classifier(bad)
    torch.save({"model": {}, "config": {}}, bad)
    with pytest.raises(ClassifierError, match="does not hold this project's classifier"):
        load_classifier(bad)
    code, message = _main(monkeypatch, capsys, "--calibrate", "--classifier", tmp_path / "none.pt")
    assert message.startswith("error: no classifier weights") and "codebase/assets" in message


@pytest.mark.parametrize("args", [[], ["--n", "1", "--calibrate"], ["--n", "x", "run"], ["--device", "tpu", "run"]])
def test_bad_flags_are_argparse_errors(args, monkeypatch, capsys):
    code, message = _main(monkeypatch, capsys, *args)
    assert code == 2 and "usage:" in message
