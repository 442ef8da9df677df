# The main CNN job with gradient accumulation, EMA weights and a cosine momentum schedule.
_base_ = './cnn_sgd_10e.py'
# Step the optimizer every 4 batches: an effective batch of 4 x 32 = 128 samples (the
# loss of each batch is divided by 4; a last, shorter window by its own length).
optimizer = dict(lr=0.04)
optimizer_config = dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4)
# Momentum from 0.9 down to 0.9 * 0.85 / 0.95 over the run, per iteration.
momentum_config = dict(policy='CosineAnnealing', min_momentum_ratio=0.85 / 0.95, by_epoch=False)
# An exponential moving average of the weights. After every epoch the EMA weights are
# swapped into the model, so the evaluation (and its best checkpoint) sees them.
custom_hooks = [dict(type='EMAHook', momentum=0.01, interval=1, warm_up=50)]
