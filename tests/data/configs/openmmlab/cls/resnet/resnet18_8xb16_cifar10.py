_base_ = ['./resnet50_8xb32_in1k.py']
import copy
num_classes = 10
model = dict(
    backbone=dict(depth=18, type='ResNet_CIFAR'),
    head=dict(num_classes=num_classes, in_channels=512))
_pipeline = copy.deepcopy(_base_.train_pipeline)
_pipeline[1] = dict(type='RandomCrop', crop_size=32, padding=4)
train_pipeline = _pipeline
train_dataloader = dict(
    batch_size=16,
    dataset=dict(type='CIFAR10', data_root='data/cifar10', split='train',
                 pipeline=_pipeline))
val_dataloader = dict(
    batch_size=16,
    dataset=dict(type='CIFAR10', data_root='data/cifar10', split='test',
                 pipeline=[p for p in _base_.test_pipeline if p['type'] != 'ResizeEdge']))
test_dataloader = val_dataloader
data_preprocessor = dict(num_classes=num_classes, mean=[125.307, 122.961, 113.8575],
                         std=[51.5865, 50.847, 51.255])
train_cfg = dict(max_epochs=200)
