_base_ = [
    '../_base_/deeplabv3_r50.py', '../_base_/cityscapes_aug.json',
    '../_base_/runtime.yaml', '../_base_/schedule_40k.json'
]
