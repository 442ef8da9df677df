_base_ = './dup_a.py'
z = _base_.model.c
