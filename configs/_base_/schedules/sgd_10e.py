# SGD with momentum for 10 epochs; the learning rate drops 10x after epoch 7.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='step', step=[7])
runner = dict(type='EpochBasedRunner', max_epochs=10)
