# A custom model and dataset from a user package, on trackcfg's shared schedule and runtime.
#   PYTHONPATH=examples/custom_model trackcfg run examples/custom_model/configs/iris_mlp.py
_base_ = [
    "../../../configs/_base_/schedules/sgd_10e.py",
    "../../../configs/_base_/default_runtime.py",
]
# Replaces the base's list: only the user package fills the registries here.
custom_imports = dict(imports=["iris_zoo"])

model = dict(type="IrisNet", hidden=16, num_classes=3)
data = dict(
    samples_per_gpu=16,
    workers_per_gpu=0,
    train=dict(type="IrisDataset", split="train", noise_std=0.05),
    val=dict(type="IrisDataset", split="val"),
)
optimizer = dict(lr=0.05)
log_config = dict(interval=5)
