model = dict(
    type='RetinaNet',
    backbone=dict(type='ResNet', depth=50),
    head=dict(type='RetinaHead', num_classes=80, _scope_='mmdet_custom'))
train_pipeline = [dict(type='LoadImage'), dict(type='Resize', scale=(640, 640))]
epochs = 12
