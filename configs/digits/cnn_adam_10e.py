# Second level of inheritance: the main CNN job with Adam instead of SGD.
_base_ = './cnn_sgd_10e.py'
# `_delete_` replaces the SGD dict outright: Adam has no `momentum`.
optimizer = dict(_delete_=True, type='Adam', lr=2e-3, weight_decay=1e-4)
