"""``Classifier``: the mmcv ``train_step``/``val_step`` protocol shared by the zoo's models.

A subclass only defines ``forward(img) -> logits``. ``train_step`` returns
``dict(loss, log_vars, num_samples)`` as mmcv 1.x's runners expect (the runner's
optimizer hook calls ``loss.backward()``); ``val_step`` returns accuracy and
loss in ``log_vars`` so the logger reports ``val/accuracy``; ``test_step`` returns
the predicted classes `EvalHook` hands to ``dataset.evaluate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Classifier"]


class Classifier(nn.Module):
    """Base of the zoo's image classifiers (cross-entropy on ``gt_label``)."""

    def train_step(
        self, data_batch: dict[str, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        """One training step's forward pass and loss (no backward: the optimizer hook does it).

        Args:
            data_batch: ``img`` ``[N, 1, H, W]`` and ``gt_label`` ``[N]``.
            optimizer: Unused; part of the mmcv signature.

        Returns:
            ``dict(loss=tensor, log_vars=dict(loss=float, accuracy=float), num_samples=N)``.
        """
        loss, log_vars, num_samples = self._evaluate(data_batch)
        return dict(loss=loss, log_vars=log_vars, num_samples=num_samples)

    @torch.no_grad()
    def val_step(
        self, data_batch: dict[str, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        """Loss and accuracy on one validation batch (the runner averages by ``num_samples``).

        Returns:
            ``dict(log_vars=dict(loss=float, accuracy=float), num_samples=N)``.
        """
        _, log_vars, num_samples = self._evaluate(data_batch)
        return dict(log_vars=log_vars, num_samples=num_samples)

    @torch.no_grad()
    def test_step(self, data_batch: dict[str, torch.Tensor]) -> list[int]:
        """The predicted class of every sample (what ``dataset.evaluate`` scores).

        Returns:
            One int per sample, in batch order.
        """
        return [int(c) for c in self(data_batch["img"]).argmax(dim=1)]

    def _evaluate(
        self, data_batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float], int]:
        # One forward pass and loss for both steps; the loss keeps its graph for backward.
        logits = self(data_batch["img"])
        labels = data_batch["gt_label"]
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        log_vars = dict(loss=float(loss.detach()), accuracy=float(accuracy))
        return loss, log_vars, int(labels.shape[0])
