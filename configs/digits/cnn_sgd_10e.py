# The main job: a small CNN on digits, SGD, 10 epochs (>= 97% validation accuracy,
# a few seconds on 2 CPU cores).
_base_ = [
    '../_base_/models/cnn.py',
    '../_base_/datasets/digits.py',
    '../_base_/schedules/sgd_10e.py',
    '../_base_/default_runtime.py',
]
# Substitution from the bases: the head always matches the dataset's classes.
model = dict(num_classes={{ _base_.num_classes }})

# Evaluate on data.val after every epoch (DigitsDataset.evaluate: accuracy, then per
# class) and keep the best epoch as best_accuracy_epoch_N.pth ('auto': the first
# metric). Keep-last-K (checkpoint_config.max_keep_ckpts) never deletes it.
evaluation = dict(interval=1, metric='accuracy', save_best='auto')
# The evaluation replaces the base's ('val', 1) stage, which would log val/accuracy a
# second time at the same step (mmdet's configs do the same).
workflow = [('train', 1)]
