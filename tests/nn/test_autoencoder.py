"""The gene autoencoder's layers."""

from __future__ import annotations

import torch

from spotfill.nn import GeneAE


def test_bottleneck_is_linear_and_hidden_layers_use_relu():
    ae = GeneAE(7, hidden=(5, 4), n_latent=3, output="softplus")
    assert [type(m).__name__ for m in ae.encoder] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [type(m).__name__ for m in ae.decoder] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Softplus"]
    assert [m.out_features for m in ae.encoder if isinstance(m, torch.nn.Linear)] == [5, 4, 3]
    assert [m.out_features for m in ae.decoder if isinstance(m, torch.nn.Linear)] == [4, 5, 7]
