_base_ = './resnet101_8xb32-coslr_in1k.py'

model = dict(
    head=dict(
        num_classes={{ _base_.model.head.num_classes }},
        loss=dict(
            _delete_=True,
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original',
            loss_weight=1.0)))
train_dataloader = dict(batch_size=_base_.train_dataloader.batch_size * 2)
optim_wrapper = dict(optimizer=dict(lr=_base_.optim_wrapper.optimizer.lr * 2, nesterov=True))
