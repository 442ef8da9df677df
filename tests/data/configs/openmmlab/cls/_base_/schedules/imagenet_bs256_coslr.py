_base_ = 'imagenet_bs256.py'
# learning policy
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR', T_max=100, by_epoch=True, begin=0, end=100)
