"""An example user package: a dataset and a model registered in trackcfg's registries.

A config pulls it in with ``custom_imports = dict(imports=['iris_zoo'])``; the
package must be importable (``PYTHONPATH=examples/custom_model``).
"""

from iris_zoo.dataset import IrisDataset
from iris_zoo.model import IrisNet

__all__ = ["IrisDataset", "IrisNet"]
