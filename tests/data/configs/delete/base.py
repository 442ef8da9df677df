model = dict(backbone=dict(type='ResNet', depth=50), head=dict(num=10))
