"""Torch modules and loss terms (computation only; training lives in :mod:`spotfill.train`)."""

from ._autoencoder import GeneAE, GeneBatch
from ._base import BaseModule, LossOutput
from ._nmf import EntryBatch, MatrixFactorization

__all__ = ["BaseModule", "EntryBatch", "GeneAE", "GeneBatch", "LossOutput", "MatrixFactorization"]
