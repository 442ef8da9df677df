"""``DigitsCNN``: a small convolutional network for 8x8 digits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trackcfg.registry import MODELS
from trackcfg.zoo.classifier import Classifier

__all__ = ["DigitsCNN"]


@MODELS.register_module()
class DigitsCNN(Classifier):
    """``(Conv3x3 -> BatchNorm -> ReLU) x len(channels)``, a 2x2 max pool, a linear head.

    Args:
        in_channels: Image channels (1 for digits).
        channels: Output channels of each conv block.
        num_classes: Number of output classes.
        image_size: Side of the square input image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        image_size: int = 8,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for ch in channels:
            layers += [nn.Conv2d(width, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU()]
            width = ch
        layers += [nn.MaxPool2d(2), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * (image_size // 2) ** 2, num_classes)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` for images ``[N, in_channels, H, W]``."""
        out: torch.Tensor = self.head(self.features(img))
        return out
