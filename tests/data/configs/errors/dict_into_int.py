_base_ = './int_base.py'
model = dict(a=1)
