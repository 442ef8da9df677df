_base_ = './base.py'
model = dict(backbone=dict(_delete_=True, type='ViT', patch=16))
