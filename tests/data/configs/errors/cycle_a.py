_base_ = './cycle_b.py'
