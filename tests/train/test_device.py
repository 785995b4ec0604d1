"""cpu_threads restores the caller's number of torch threads."""

from __future__ import annotations

import pytest
import torch

from spotfill.train import cpu_threads


def test_cpu_threads_restores_the_previous_number():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), cpu_threads(1):  # restored after an error too
            raise RuntimeError
        assert torch.get_num_threads() == 2
        with cpu_threads(None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
