_base_ = './deeplabv3_r101_4xb2-80k_cityscapes.yaml'
model = dict(
    decode_head=dict(num_classes=150),
    test_cfg=dict(_delete_=True, mode='slide', crop_size=_base_.crop_size, stride=(341, 341)))
train_dataloader = dict(dataset=dict(_delete_=True, type='ADE20KDataset', data_root='data/ade',
                                     pipeline=_base_.train_pipeline))
