_base_ = './dup_a.py'
x = 1
del _base_
