_base_ = './dup_a.py'
_base_.modle.a = 2
