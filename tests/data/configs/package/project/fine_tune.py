_base_ = ['mmdet::retina/retina_r50.py']
model = dict(head=dict(num_classes=3))
train_pipeline = _base_.train_pipeline + [dict(type='Pack')]
