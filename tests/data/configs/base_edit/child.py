_base_ = './base.py'
_base_.model.backbone = dict(type='ViT')
_base_.model.head.num += 5
_base_.pipeline.append(dict(type='B'))
del _base_.lr
seen = _base_.model
