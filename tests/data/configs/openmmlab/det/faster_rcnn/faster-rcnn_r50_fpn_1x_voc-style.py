_base_ = './faster-rcnn_r50_fpn_1x_coco.py'
num_classes = 20
model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes)))
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=3,
        dataset=dict(
            type='VOCDataset',
            data_root='data/VOCdevkit/',
            ann_file='VOC2007/ImageSets/Main/trainval.txt',
            data_prefix=dict(sub_data_root='VOC2007/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=_base_.train_pipeline,
            backend_args=_base_.backend_args)))
val_dataloader = dict(dataset=dict(pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='11points')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=_base_.optim_wrapper.optimizer.lr / 2))
auto_scale_lr = dict(base_batch_size=_base_.train_dataloader.batch_size * 8)
