test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path')),
]
model = dict(backbone=dict(type='ResNet', depth=50), neck=dict(type='FPN'))
