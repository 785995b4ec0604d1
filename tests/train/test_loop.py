from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spotfill import InputError, SpotfillError
from spotfill.nn import BaseModule, LossOutput
from spotfill.train import History, TrainConfig, load_mask, load_state, resolve_device, save_model, train


class Scalar(BaseModule):
    """Fits one number to data by squared error; batches are 1-D tensors of targets."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(init))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.theta.expand_as(batch)

    def loss(self, batch: torch.Tensor) -> LossOutput:
        se = (self(batch) - batch) ** 2
        return LossOutput(loss=se.mean(), components={"mse": se.mean().detach()}, n_obs=batch.numel())


class Fixed(BaseModule):
    """A parameter whose validation loss is scripted, to test early stopping exactly."""

    def __init__(self, val_losses: list[float]) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.0))
        self.val_losses = val_losses
        self.calls = 0

    def loss(self, batch: str) -> LossOutput:
        if batch == "train":
            # each step moves theta by exactly +1 (gradient -1, lr 1)
            return LossOutput(loss=-self.theta, n_obs=1)
        value = self.val_losses[self.calls]
        self.calls += 1
        return LossOutput(loss=torch.tensor(value), n_obs=1)


DATA = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])


def batches(rng: np.random.Generator):
    order = torch.from_numpy(rng.permutation(DATA.numel()))
    return [DATA[order[i : i + 3]] for i in range(0, DATA.numel(), 3)]


def test_scalar_converges_to_mean():
    m = Scalar()
    hist = train(m, train_batches=batches, config=TrainConfig(max_epochs=300, lr=0.05, patience=None, progress=False))
    assert m.theta.item() == pytest.approx(4.5, abs=0.1)
    assert hist.n_epochs == 300
    assert len(hist.components["mse"]) == 300
    assert hist.val_loss == []
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert not m.training  # left in eval mode


def test_epoch_loss_is_weighted_by_n_obs():
    m = Scalar(init=0.0)
    # lr tiny -> theta stays ~0, epoch loss ~ mean of squares of all 8 values, weighting 3/3/2 batch sizes
    hist = train(m, train_batches=batches, config=TrainConfig(max_epochs=1, lr=1e-12, progress=False))
    assert hist.train_loss[0] == pytest.approx(float((DATA**2).mean()), rel=1e-5)


def test_early_stopping_restores_best_epoch():
    vals = [5.0, 3.0, 4.0, 2.0, 2.5, 2.2, 2.1, 9.0, 9.0, 9.0]
    m = Fixed(vals)
    cfg = TrainConfig(max_epochs=10, lr=1.0, patience=3, progress=False)
    hist = train(m, train_batches=lambda rng: ["train"], val_batches=lambda: ["val"], config=cfg)
    # best validation at epoch 3 (value 2.0); epochs 4, 5, 6 do not improve -> stop after epoch 6
    assert hist.best_epoch == 3
    assert hist.stopped_early
    np.testing.assert_allclose(hist.val_loss, vals[:7], rtol=1e-6)
    assert len(hist.train_loss) == 7
    # theta after epoch e is e + 1: the best state (epoch 3) has theta = 4
    assert m.theta.item() == pytest.approx(4.0)


def test_min_delta_counts_small_gains_as_no_improvement():
    vals = [1.0, 0.99, 0.98, 0.97, 0.5]
    m = Fixed(vals)
    cfg = TrainConfig(max_epochs=5, lr=1.0, patience=3, min_delta=0.05, progress=False)
    hist = train(m, train_batches=lambda rng: ["train"], val_batches=lambda: ["val"], config=cfg)
    assert hist.best_epoch == 0
    assert hist.stopped_early
    assert m.theta.item() == pytest.approx(1.0)


def test_same_seed_same_result_and_global_rng_untouched():
    def run(seed):
        m = Scalar()
        train(m, train_batches=batches, config=TrainConfig(max_epochs=5, lr=0.05, seed=seed, progress=False))
        return m.theta.item()

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = run(0), run(0)
    after = torch.rand(1)
    assert a == b
    assert run(1) != a  # a different shuffle order gives a different SGD path
    assert torch.equal(before, after)


def test_divergence_raises():
    m = Scalar()
    with pytest.raises(ValueError, match="diverged"):
        train(m, train_batches=batches, config=TrainConfig(max_epochs=50, lr=10.0, progress=False))


def test_invalid_config_raises():
    with pytest.raises(InputError, match="optimizer"):
        train(Scalar(), train_batches=batches, config=TrainConfig(optimizer="rmsprop", progress=False))
    with pytest.raises(InputError, match="max_epochs"):
        train(Scalar(), train_batches=batches, config=TrainConfig(max_epochs=0, progress=False))


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_other_optimizers(opt):
    m = Scalar()
    train(m, train_batches=batches, config=TrainConfig(max_epochs=200, lr=0.1, optimizer=opt, progress=False))
    assert m.theta.item() == pytest.approx(4.5, abs=0.3)


def test_weight_decay_per_optimizer():
    """L2 decay (sgd, adam) moves the least-squares fixed point; decoupled decay (adamw) moves it further.

    With batch mean 4.5 and loss ``mean((theta - x)^2)``, the coupled decay adds ``wd * theta`` to the
    gradient, whose zero is then ``2 * 4.5 / (2 + wd)`` = 3.0 for wd = 1 (sgd and adam). AdamW
    subtracts ``lr * wd * theta`` outside Adam's normalised step, which is at most about ``lr``.
    """
    got = {}
    for opt in ("sgd", "adam", "adamw"):
        m = Scalar()
        cfg = TrainConfig(max_epochs=300, lr=0.1, optimizer=opt, weight_decay=1.0, progress=False)
        train(m, train_batches=batches, config=cfg)
        got[opt] = m.theta.item()
    assert got["sgd"] == pytest.approx(3.0, abs=0.15)
    assert got["adam"] == pytest.approx(3.0, abs=0.2)  # measured 3.10
    assert got["adamw"] < 1.5
    m = Scalar()
    train(m, train_batches=batches, config=TrainConfig(max_epochs=300, lr=0.1, optimizer="adamw", progress=False))
    assert m.theta.item() == pytest.approx(4.5, abs=0.3)  # no decay: adamw is adam


def test_history_defaults():
    h = History()
    assert h.n_epochs == 0
    assert h.best_epoch == -1


def test_resolve_device():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_raises():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="CUDA"):
        train(Scalar(), train_batches=batches, config=TrainConfig(device="cuda", progress=False))


def test_save_and_load_state(tmp_path):
    m = Scalar(init=2.5)
    folder = save_model(tmp_path / "m", m, {"n": np.int64(3), "x": 0.5, "t": (1, 2)}, ["a", "b"], extra={"k": 1})
    state, meta = load_state(folder)
    assert torch.equal(state["theta"], torch.tensor(2.5))
    assert meta["params"] == {"n": 3, "x": 0.5, "t": [1, 2]}
    assert meta["var_names"] == ["a", "b"]
    assert meta["class"] == "Scalar"
    assert meta["extra"] == {"k": 1}
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "params.json"]  # no temp files left
    with pytest.raises(InputError, match="not a saved spotfill model"):
        load_state(tmp_path / "nowhere")


class Breaks(BaseModule):
    """Loss ``theta`` (gradient 1): from ``theta = -3e38`` one SGD step of ``lr = 3e38`` overflows to -inf."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(-3e38))

    def loss(self, batch: torch.Tensor) -> LossOutput:
        return LossOutput(loss=self.theta * 1.0, n_obs=1)


def test_divergence_in_the_last_update_raises():
    # the epoch's mean loss (-3e38, measured before the step) is finite; the step makes theta -inf
    cfg = TrainConfig(max_epochs=3, lr=3e38, optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="non-finite parameters"):
        train(Breaks(), train_batches=lambda rng: [torch.zeros(1)], config=cfg)


def test_nonfinite_validation_loss_raises():
    with pytest.raises(ValueError, match="validation loss nan"):
        train(
            Fixed([float("nan")]),
            train_batches=lambda rng: ["train"],
            val_batches=lambda: ["val"],
            config=TrainConfig(max_epochs=2, lr=1.0, progress=False),
        )


def test_interrupted_save_over_a_model_is_refused(tmp_path, monkeypatch):
    import spotfill.train._io as io_mod

    save_model(tmp_path, Scalar(init=1.0), {}, None, mask=np.eye(2, dtype=bool))
    real = io_mod._write

    def killed_at_params(path, write):
        if path.name == "params.json":
            raise KeyboardInterrupt
        return real(path, write)

    monkeypatch.setattr(io_mod, "_write", killed_at_params)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path, Scalar(init=2.0), {}, None)  # new weights, no mask: the old mask is removed
    monkeypatch.setattr(io_mod, "_write", real)
    with pytest.raises(InputError, match="incomplete or mixed save: model.pt"):
        load_state(tmp_path)
    save_model(tmp_path, Scalar(init=2.0), {}, None)  # a complete save is read again
    assert torch.equal(load_state(tmp_path)[0]["theta"], torch.tensor(2.0))
    (tmp_path / "mask.npz").write_bytes(b"stray")  # a file that the save said was not there
    with pytest.raises(InputError, match="mask.npz"):
        load_state(tmp_path)


def test_saved_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        save_model(tmp_path, Scalar(), {}, None, mask=np.eye(2, dtype=bool))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"model.pt": 0o644, "params.json": 0o644, "mask.npz": 0o644}


class Noisy(BaseModule):
    """Squared error to a target plus torch noise drawn in every loss: the result depends on torch's RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.0))

    def loss(self, batch: torch.Tensor) -> LossOutput:
        noise = torch.randn(batch.shape)
        return LossOutput(loss=((self.theta - batch - noise) ** 2).mean(), n_obs=batch.numel())


def _batches(rng: np.random.Generator):
    data = torch.arange(8, dtype=torch.float32)
    order = torch.from_numpy(rng.permutation(8))
    return [data[order[i : i + 4]] for i in range(0, 8, 4)]


def test_the_seed_fixes_torch_randomness_inside_the_loop_whatever_the_global_state():
    def run(global_seed: int) -> float:
        torch.manual_seed(global_seed)  # the caller's state: must not matter
        m = Noisy()
        config = TrainConfig(max_epochs=3, lr=0.05, seed=7, patience=None, progress=False)
        train(m, train_batches=_batches, config=config)
        return m.theta.item()

    assert run(1) == run(2)


class ScalarAtOneAndAHalf(BaseModule):
    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(1.5))


class _NotATensor:
    """Any picklable object: a model file holding one could run code when unpickled."""


def test_a_model_file_holding_arbitrary_objects_is_refused(tmp_path):
    folder = save_model(tmp_path / "m", ScalarAtOneAndAHalf(), {}, None)
    torch.save({"theta": _NotATensor()}, folder / "model.pt")
    meta = json.loads((folder / "params.json").read_text())
    del meta["files"]  # as written before spotfill recorded digests: read unchecked
    (folder / "params.json").write_text(json.dumps(meta))
    with pytest.raises(pickle.UnpicklingError):
        load_state(folder)


@pytest.mark.parametrize("device", ["meta", "mps", "xpu"])
def test_devices_other_than_cpu_and_cuda_are_refused(device):
    with pytest.raises(InputError, match="not supported"):
        resolve_device(device)


class ModeSpy(BaseModule):
    """Records whether each training batch ran in training mode (dropout, batch norm depend on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.0))
        self.modes: list[bool] = []

    def loss(self, batch: str) -> LossOutput:
        if batch == "train":
            self.modes.append(self.training)
        return LossOutput(loss=(self.theta - 1.0) ** 2, n_obs=1)


def test_every_epoch_trains_in_training_mode_after_the_previous_validation():
    m = ModeSpy()
    config = TrainConfig(max_epochs=3, lr=0.1, patience=None, progress=False)
    train(m, train_batches=lambda rng: ["train"], val_batches=lambda: ["val"], config=config)
    assert m.modes == [True, True, True]
    assert not m.training  # left in eval mode


def test_an_epoch_without_batches_is_a_clear_error():
    with pytest.raises(SpotfillError, match="no batches"):
        train(ModeSpy(), train_batches=lambda rng: [], config=TrainConfig(max_epochs=2, progress=False))


def test_batch_size_below_one_is_refused():
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0).validate()


def test_a_mask_of_another_shape_is_refused_and_numpy_flags_stay_booleans(tmp_path):
    mask = sp.csr_matrix(np.array([[True, False], [False, True]]))
    folder = save_model(tmp_path / "m", ScalarAtOneAndAHalf(), {"flag": np.bool_(True)}, ["a", "b"], mask=mask)
    _, meta = load_state(folder)
    assert meta["params"] == {"flag": True}
    assert load_mask(folder, (2, 2)).toarray().tolist() == [[True, False], [False, True]]
    with pytest.raises(InputError, match="mask"):
        load_mask(folder, (3, 2))


def test_device_names_are_read_whatever_their_case_and_spacing():
    assert resolve_device(" CPU ") == torch.device("cpu")
