_base_ = './base.py'
base_test_pipeline = _base_.test_pipeline
base_test_pipeline[-1]['meta_keys'] = ('img_id', 'img_path', 'scale_factor')
backbone = _base_.model.backbone
for key in ['depth']:
    backbone[key] = 101
