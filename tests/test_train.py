"""Tests of the ANN part of snnlab.train: learning, schedules, checkpoints, resuming and the get_ann cache."""
from pathlib import Path

import pytest
import torch

from snnlab import train
from snnlab.data import get_loaders
from snnlab.models import build_model


def _digits_model():
    return build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8)


def test_vgg_mini_learns_digits():
    train.seed_everything(0)
    train_loader, test_loader = get_loaders("digits", batch_size=64)
    model = _digits_model()
    history = train.train_ann(model, train_loader, epochs=5, test_loader=test_loader,
                              progress=False)
    assert history["test_acc"][-1] >= 90.0
    assert history["test_acc"][-1] == train.evaluate(model, test_loader)
    assert [len(v) for v in history.values()] == [5] * 4
    assert history["loss"][-1] < history["loss"][0]


def test_evaluate_matches_a_direct_count_and_restores_mode():
    _, test_loader = get_loaders("digits")
    model = _digits_model().train()
    accuracy = train.evaluate(model, test_loader)
    assert model.training
    with torch.no_grad():
        predictions = model.eval()(test_loader.x).argmax(1)
    assert accuracy == pytest.approx(100.0 * (predictions == test_loader.y).float().mean().item())


def test_seeded_training_is_reproducible():
    weights = []
    for _ in range(2):
        train.seed_everything(5)
        model = _digits_model()
        train.train_ann(model, get_loaders("digits", seed=5)[0], epochs=1, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(*weights)


def test_schedules_peak_and_decay():
    def lrs(schedule):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
        scheduler = train.make_scheduler(optimizer, schedule, 0.3, total_steps=100)
        values = []
        for _ in range(100):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return values
    onecycle, cosine = lrs("onecycle"), lrs("cosine")
    assert max(onecycle) == pytest.approx(0.3, rel=1e-3)
    assert onecycle.index(max(onecycle)) in (24, 25)  # 25 % warm-up
    assert onecycle[-1] < 1e-3 and cosine[0] == 0.3 and cosine[-1] < 1e-3
    step = lrs("step")  # ÷ 5 at 60, 80 and 90 % of the steps (Datta & Beerel, IIR-SNN)
    assert step[59] == 0.3 and step[60] == pytest.approx(0.06) and step[80] == pytest.approx(0.012)
    assert step[90] == pytest.approx(0.0024) and step[-1] == pytest.approx(0.0024)


@pytest.mark.parametrize("steps", range(1, 10))
def test_onecycle_runs_on_a_handful_of_steps(steps):
    """torch's OneCycleLR divides by warm-up·steps − 1, zero at 25 % of 4 steps: a 1-epoch run on 500 images."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = train.make_scheduler(optimizer, "onecycle", 0.3, total_steps=steps)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        assert 0 <= optimizer.param_groups[0]["lr"] <= 0.3


@pytest.mark.parametrize("kwargs, match", [({"epochs": 0}, "epochs"),
                                           ({"epochs": 1, "lr": 0}, "lr"),
                                           ({"epochs": 1, "schedule": "linear"}, "onecycle"),
                                           ({"epochs": 1, "optimizer": "lion"}, "sgd, adam")])
def test_bad_training_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.train_ann(_digits_model(), get_loaders("digits")[0], **kwargs)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model, copy = _digits_model().eval(), _digits_model().eval()
    path = tmp_path / "sub" / "net.pt"
    train.save_checkpoint(path, model, {"note": "hi", "acc": 1.5})
    assert train.load_checkpoint(path, copy) == {"note": "hi", "acc": 1.5}
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(model(x), copy(x))
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temp file left


def test_broken_checkpoints_name_the_path(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x00 not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pt.*delete"):
        train.load_checkpoint(path, _digits_model())
    train.save_checkpoint(path, build_model("resnet20", num_classes=10), {})
    with pytest.raises(RuntimeError, match="broken.pt.*does not fit"):
        train.load_checkpoint(path, _digits_model())


def test_get_ann_trains_once_then_loads(tmp_cache):
    kwargs = dict(dataset="digits", activation="qcfs", levels=2, epochs=2, lr=0.05, progress=False)
    model, info = train.get_ann(**kwargs)
    assert not info["cached"] and not model.training
    assert info["checkpoint"].startswith(str(tmp_cache / "checkpoints" / "vgg-mini-digits-qcfs-"))
    again, info_again = train.get_ann(**kwargs)
    assert info_again["cached"] and info_again["test_accuracy"] == info["test_accuracy"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    _, other = train.get_ann(**{**kwargs, "levels": 3, "epochs": 1})
    assert other["checkpoint"] != info["checkpoint"] and not other["cached"]


def test_prepare_gives_the_cached_ann_its_calibration_images_and_a_balanced_test_loader(tmp_cache):
    kwargs = dict(dataset="digits", epochs=1, train_size=600, seed=3)
    ann, info, calibration, test_loader = train.prepare(**kwargs, calibration=50, test_size=200, batch_size=64,
                                                        progress=False)
    model, same = train.get_ann(**kwargs, progress=False)
    assert same["cached"] and same["checkpoint"] == info["checkpoint"]
    first_pass, _ = get_loaders("digits", batch_size=50, train_size=600, augment=False, seed=3)
    assert torch.equal(calibration, next(iter(first_pass))[0])  # the ANN's own training images, unaugmented
    assert len(test_loader.x) == 200 and test_loader.batch_size == 64
    assert torch.bincount(test_loader.y[:20]).tolist() == [2] * 10  # any prefix holds every class
    for bad in (0, 601, 2.5, True):
        with pytest.raises(ValueError, match=rf"calibration must be an integer from 1 to 600 .*got {bad!r}"):
            train.prepare(**kwargs, calibration=bad, progress=False)


def test_get_ann_resumes_an_interrupted_training_bitwise(tmp_path, monkeypatch):
    kwargs = dict(dataset="digits", epochs=3, lr=0.05, train_size=512, progress=False)  # 4 batches an epoch
    monkeypatch.setenv("SNNLAB_CACHE", str(tmp_path / "whole"))
    whole, whole_info = train.get_ann(**kwargs)

    monkeypatch.setenv("SNNLAB_CACHE", str(tmp_path / "cut"))
    save, saves = train.save_training, []

    def interrupt_after_epoch_2(*args):
        save(*args)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(train, "save_training", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.get_ann(**kwargs)
    monkeypatch.setattr(train, "save_training", save)
    (partial,) = (tmp_path / "cut" / "checkpoints").iterdir()
    assert partial.name.endswith(".partial.pt")
    assert len(torch.load(partial, weights_only=True)["meta"]["history"]["loss"]) == 2

    epoch, epochs_run = train._train_epoch, []
    monkeypatch.setattr(train, "_train_epoch", lambda *args: epochs_run.append(1) or epoch(*args))
    resumed, info = train.get_ann(**kwargs)
    assert len(epochs_run) == 1 and not info["cached"]  # only the third epoch was trained again
    assert info["history"]["loss"] == whole_info["history"]["loss"]
    assert info["test_accuracy"] == whole_info["test_accuracy"]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == [Path(info["checkpoint"]).name]


def test_training_refuses_an_unwritable_checkpoint_folder_before_it_starts(tmp_cache, monkeypatch):
    tmp_cache.mkdir()
    (tmp_cache / "checkpoints").write_text("a file where the folder should be")

    def train_epoch(*args):
        raise AssertionError("training started")
    monkeypatch.setattr(train, "_train_epoch", train_epoch)
    with pytest.raises(OSError, match=r"cannot write to .*checkpoints .*SNNLAB_CACHE="):
        train.get_ann(dataset="digits", epochs=1, progress=False)


def test_failed_checkpoint_save_names_the_file(tmp_path, monkeypatch):
    def disk_full(obj, f):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match=r"net\.pt \(No space left on device\)"):
        train.save_checkpoint(tmp_path / "net.pt", _digits_model(), {})
    assert list(tmp_path.iterdir()) == []


def test_a_finished_checkpoint_only_reads_its_folder(tmp_path, monkeypatch):
    def run():
        train.seed_everything(0)
        loader = get_loaders("digits", batch_size=64, train_size=128)[0]
        return train.train_ann(_digits_model(), loader, epochs=1, checkpoint=tmp_path / "ann.pt", progress=False)
    history = run()

    def read_only(folder):
        raise OSError(f"cannot write to {folder}")
    monkeypatch.setattr(train, "check_writable", read_only)
    assert run() == history  # loaded, nothing to train, nothing to save
    (tmp_path / "ann.pt").unlink()
    with pytest.raises(OSError, match="cannot write"):  # a run with epochs to train checks first
        run()
