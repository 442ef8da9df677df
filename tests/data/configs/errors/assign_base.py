_base_ = './dup_a.py'
_base_.model.a = 2
