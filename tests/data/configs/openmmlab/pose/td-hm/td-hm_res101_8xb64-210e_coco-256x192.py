_base_ = ['./td-hm_res50_8xb64-210e_coco-256x192.py', '../_base_/datasets/coco.py']
import math


def scaled(lr, batch):
    return lr * batch / 512


model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')),
    head={'loss': {'_delete_': True, 'type': 'KeypointOHKMMSELoss', 'use_target_weight': True}})
optim_wrapper = dict(optimizer=dict(lr=scaled(_base_.optim_wrapper.optimizer.lr, 256)))
codec = {{ _base_.codec }}
flip_indices = [_base_.dataset_info.keypoint_info[0]['id'], 2, 1]
input_sizes = ({{ _base_.codec.input_size }}, (288, 384))
warmup_iters = int(math.ceil(_base_.param_scheduler[0]['end'] / 2))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=warmup_iters, start_factor=0.001, by_epoch=False),
    _base_.param_scheduler[1],
]
train_dataloader = dict(batch_size=32, dataset=dict(metainfo=dict(from_file='configs/_base_/datasets/coco.py')))
