_base_ = './dup_a.py'
x = 1
_base_ = './dup_b.py'
