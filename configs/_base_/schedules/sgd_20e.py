# The 10-epoch SGD schedule stretched to 20 epochs (a base of a base).
_base_ = './sgd_10e.py'
lr_config = dict(step=[14])
runner = dict(max_epochs=20)
