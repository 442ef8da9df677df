# scikit-learn's 8x8 digits (ships with scikit-learn: nothing to download).
# Every 5th sample is validation (360 images), the rest training (1,437 images).
dataset_type = 'DigitsDataset'
num_classes = 10
data = dict(
    samples_per_gpu=32,
    workers_per_gpu=0,
    train=dict(
        type=dataset_type,
        split='train',
        val_every=5,
        augment=True,  # random 1-pixel shift + Gaussian noise, drawn in __getitem__
        max_shift=1,
        noise_std=0.05,
    ),
    val=dict(type=dataset_type, split='val', val_every=5, augment=False),
)
