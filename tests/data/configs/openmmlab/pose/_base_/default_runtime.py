_base_ = ['./runtime/hooks.py', './runtime/env.yml']
default_scope = 'mmpose'
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='PoseLocalVisualizer', vis_backends=vis_backends, name='visualizer')
train_cfg = dict(by_epoch=True)
val_cfg = dict()
test_cfg = dict()
