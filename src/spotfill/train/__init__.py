"""The one training loop (optimiser, early stopping, history), device handling, model files."""

from ._device import cpu_threads, device_type, resolve_device
from ._io import load_mask, load_state, save_model
from ._loop import History, TrainConfig, train

__all__ = [
    "History",
    "TrainConfig",
    "cpu_threads",
    "device_type",
    "load_mask",
    "load_state",
    "resolve_device",
    "save_model",
    "train",
]
