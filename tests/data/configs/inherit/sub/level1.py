_base_ = '../single.py'
level = 1
