lr = 0.1
model = dict(backbone=dict(depth=50, channels=[64, 128]), name='r50')
