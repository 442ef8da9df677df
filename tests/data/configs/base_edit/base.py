model = dict(backbone=dict(type='ResNet', depth=50), head=dict(num=10))
pipeline = [dict(type='A')]
lr = 0.1
