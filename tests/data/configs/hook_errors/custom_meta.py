_base_ = './base.py'
custom_hooks = [
    dict(type='IterTimerHook'),
    dict(type='CheckpointHook', meta='x'),
]
