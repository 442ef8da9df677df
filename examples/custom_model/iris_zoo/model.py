"""``IrisNet``: a small MLP speaking mmcv's ``train_step``/``val_step`` protocol."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trackcfg.registry import MODELS


@MODELS.register_module()
class IrisNet(nn.Module):
    """``Linear -> ReLU -> Linear`` on the 4 iris features."""

    def __init__(self, hidden: int = 16, num_classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(features)
        return out

    def train_step(
        self, data_batch: dict[str, torch.Tensor], optimizer: object
    ) -> dict[str, object]:
        """mmcv: return the loss (the optimizer hook back-propagates it) and what to log."""
        logits = self(data_batch["features"])
        loss = F.cross_entropy(logits, data_batch["label"])
        return dict(
            loss=loss,
            log_vars=dict(loss=float(loss.detach())),
            num_samples=len(data_batch["label"]),
        )

    @torch.no_grad()
    def val_step(
        self, data_batch: dict[str, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        """mmcv: what to log for one validation batch (averaged by ``num_samples``)."""
        logits = self(data_batch["features"])
        accuracy = (logits.argmax(dim=1) == data_batch["label"]).float().mean()
        return dict(log_vars=dict(accuracy=float(accuracy)), num_samples=len(data_batch["label"]))
