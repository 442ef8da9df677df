_base_ = './base.py'
log_config = dict(
    interval=1,
    hooks=[dict(type='TextLoggerHook', flush_interval=-1)],
)
