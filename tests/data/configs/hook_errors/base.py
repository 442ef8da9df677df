model = dict(type='ErrorTableNet')
data = dict(samples_per_gpu=4, workers_per_gpu=0, train=dict(type='ErrorTableData'))
optimizer = dict(type='SGD', lr=0.1)
runner = dict(type='EpochBasedRunner', max_epochs=1)
log_config = dict(interval=1, hooks=[])
seed = 0
