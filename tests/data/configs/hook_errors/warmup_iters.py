_base_ = './base.py'
lr_config = dict(
    policy='step',
    step=[1],
    warmup='linear',
    warmup_iters=0,
)
