"""``IrisDataset``: scikit-learn's iris flowers (150 samples, 4 features, 3 classes)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from trackcfg.registry import DATASETS


@DATASETS.register_module()
class IrisDataset(Dataset[dict[str, torch.Tensor]]):
    """Standardised iris features; every ``val_every``-th sample is validation.

    Args:
        split: ``'train'`` or ``'val'``.
        val_every: The split rule (index % val_every == 0 is validation).
        noise_std: Gaussian noise added to training features in ``__getitem__``,
            drawn from torch's global generator (seeded and checkpointed by the runner).
    """

    def __init__(self, split: str = "train", val_every: int = 5, noise_std: float = 0.0) -> None:
        from sklearn.datasets import load_iris

        bunch = load_iris()
        x = np.asarray(bunch.data, dtype=np.float32)
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        is_val = np.arange(len(x)) % val_every == 0
        keep = is_val if split == "val" else ~is_val
        self.features = torch.from_numpy(x[keep].copy())
        self.labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64)[keep].copy())
        self.noise_std = noise_std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.features[index]
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)
        return dict(features=x, label=self.labels[index])
