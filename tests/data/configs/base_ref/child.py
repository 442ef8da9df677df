_base_ = './base.py'
whole = {{ _base_.lr }}
element = {{ _base_.model.backbone.channels[1] }}
nested = {{ _base_.model.backbone }}
text = 'model-{{ _base_.model.name }}-lr{{ _base_.lr }}'
doubled = _base_.lr * 2
copied = _base_.model
copied.backbone.depth = 101
