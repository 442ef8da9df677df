_base_ = './base_a.py'
a = dict(y=dict(w=3))
items = [4]
