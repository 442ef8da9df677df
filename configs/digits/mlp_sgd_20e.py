# An MLP on digits for 20 epochs (the schedule itself inherits from sgd_10e.py).
_base_ = [
    '../_base_/models/mlp.py',
    '../_base_/datasets/digits.py',
    '../_base_/schedules/sgd_20e.py',
    '../_base_/default_runtime.py',
]
model = dict(hidden_dims=(256,), num_classes={{ _base_.num_classes }})
# A fully connected net cannot absorb pixel shifts: keep only the noise.
data = dict(train=dict(max_shift=0))
optimizer = dict(lr=0.05)
