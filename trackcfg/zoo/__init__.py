"""A small model zoo on real data: scikit-learn's digits, an MLP and a small CNN.

Importing this package registers ``DigitsDataset`` in ``DATASETS`` and
``DigitsMLP``/``DigitsCNN`` in ``MODELS``; configs pull it in with
``custom_imports = dict(imports=['trackcfg.zoo'])``. It imports torch and
scikit-learn, so nothing on the config-loading path may import it.
"""

from trackcfg.zoo.cnn import DigitsCNN
from trackcfg.zoo.digits import DigitsDataset
from trackcfg.zoo.mlp import DigitsMLP

__all__ = ["DigitsCNN", "DigitsDataset", "DigitsMLP"]
