_base_ = './base.py'
checkpoint_config = dict(interval=1, sync_bufer=True)
