x = 1
_base_ = './cycle_a.py'
