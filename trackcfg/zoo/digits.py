"""``DigitsDataset``: scikit-learn's 8x8 handwritten digits, split by a fixed rule.

The 1,797 images ship inside scikit-learn (no download). The split is a pure
function of the sample index — every ``val_every``-th sample (index % val_every
== 0) is validation, the rest training — so it is identical on every machine
and needs no seed.

Augmentation runs inside ``__getitem__`` and draws only from torch's global
generator. The runner's data loader (``trackcfg.runner.sampler.SeededDataset``)
seeds that generator per batch from (seed, epoch, rank, batch index) in
whichever process fetches the batch, so an augmented batch is the same after a
resume and with any ``workers_per_gpu``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from trackcfg.registry import DATASETS

__all__ = ["DigitsDataset"]

#: Pixel values in scikit-learn's digits go from 0 to 16.
_PIXEL_MAX = 16.0


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn is heavy and only the dataset needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / _PIXEL_MAX
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images, labels


@DATASETS.register_module()
class DigitsDataset(Dataset[dict[str, torch.Tensor]]):
    """scikit-learn's digits as ``dict(img=[1, 8, 8] float tensor, gt_label=int64 tensor)``.

    Args:
        split: ``'train'`` or ``'val'``.
        val_every: Every ``val_every``-th sample (by index) is validation.
        augment: Apply random shift and noise in ``__getitem__``.
        max_shift: Largest shift in pixels along each axis (zero-filled).
        noise_std: Standard deviation of the added Gaussian noise.

    Example:
        >>> ds = DigitsDataset(split='val')
        >>> len(ds), tuple(ds[0]['img'].shape)
        (360, (1, 8, 8))
    """

    CLASSES = tuple(str(d) for d in range(10))

    def __init__(
        self,
        split: str = "train",
        val_every: int = 5,
        augment: bool = False,
        max_shift: int = 1,
        noise_std: float = 0.05,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if val_every < 2:
            raise ValueError(f"val_every must be at least 2, got {val_every!r}")
        images, labels = _load_digits()
        is_val = np.arange(len(labels)) % val_every == 0
        keep = is_val if split == "val" else ~is_val
        self.split = split
        self.augment = augment
        self.max_shift = max_shift
        self.noise_std = noise_std
        self.images = torch.from_numpy(images[keep].copy()).unsqueeze(1)
        self.labels = torch.from_numpy(labels[keep].copy())

    def __len__(self) -> int:
        return len(self.labels)

    def evaluate(
        self,
        results: Sequence[object],
        metric: str | Sequence[str] = "accuracy",
        logger: logging.Logger | None = None,
    ) -> dict[str, float]:
        """Score predicted classes (one per sample, dataset order), as mmcv datasets do.

        Args:
            results: The predicted class of every sample.
            metric: ``'accuracy'`` (overall, then ``accuracy_<class>`` per class), or a
                list of metrics.
            logger: Where a summary line goes (`EvalHook` passes the runner's).

        Returns:
            ``accuracy`` first (what ``save_best='auto'`` picks), then per class.

        Raises:
            ValueError: an unknown metric, or not one result per sample.

        Example:
            >>> ds = DigitsDataset(split='val')
            >>> ds.evaluate([int(y) for y in ds.labels])['accuracy']
            1.0
        """
        metrics = [metric] if isinstance(metric, str) else list(metric)
        unknown = [m for m in metrics if m != "accuracy"]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; DigitsDataset supports 'accuracy'")
        if len(results) != len(self.labels):
            raise ValueError(
                f"expected one result per sample ({len(self.labels)}), got {len(results)}"
            )
        predicted = torch.tensor([int(r) for r in results], dtype=torch.int64)  # type: ignore[call-overload]
        correct = predicted == self.labels
        scores = {"accuracy": float(correct.double().mean())}
        for cls in range(len(self.CLASSES)):
            of_class = self.labels == cls
            total = int(of_class.sum())
            scores[f"accuracy_{self.CLASSES[cls]}"] = (
                float(correct[of_class].double().mean()) if total else math.nan
            )
        if logger is not None:
            logger.info("DigitsDataset (%s): accuracy %.4f", self.split, scores["accuracy"])
        return scores

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img = self.images[index]
        if self.augment:
            img = self._augment(img)
        return dict(img=img, gt_label=self.labels[index])

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        # Draws from torch's global generator only (see the module docstring).
        if self.max_shift > 0:
            dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
            img = _shift(img, dy, dx)
        if self.noise_std > 0:
            img = img + self.noise_std * torch.randn_like(img)
        return img


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift the last two axes by ``(dy, dx)`` pixels, filling with zeros."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = img[..., src_y, src_x]
    return out
