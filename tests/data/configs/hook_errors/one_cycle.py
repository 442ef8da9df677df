_base_ = './base.py'
lr_config = dict(policy='OneCycle', max_lr=0.1, total_steps=2)
