_base_ = './base.py'
model = dict(backbone=dict(_delete_=False, depth=101))
