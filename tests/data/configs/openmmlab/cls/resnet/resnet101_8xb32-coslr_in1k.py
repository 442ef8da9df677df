_base_ = ['./resnet50_8xb32-coslr_in1k.py']
model = dict(backbone=dict(depth=101))
