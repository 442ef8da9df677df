"""``DigitsMLP``: a multi-layer perceptron over flattened 8x8 digits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trackcfg.registry import MODELS
from trackcfg.zoo.classifier import Classifier

__all__ = ["DigitsMLP"]


@MODELS.register_module()
class DigitsMLP(Classifier):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden layer, then a linear head.

    Args:
        in_features: Pixels per image (64 for 8x8 digits).
        hidden_dims: Width of each hidden layer.
        num_classes: Number of output classes.
        dropout: Dropout after each hidden layer (0 disables it).
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden_dims: Sequence[int] = (128,),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for dim in hidden_dims:
            layers += [nn.Linear(width, dim), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = dim
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` for images ``[N, 1, H, W]``."""
        out: torch.Tensor = self.net(img)
        return out
