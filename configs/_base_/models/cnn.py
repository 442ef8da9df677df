# Two 3x3 conv blocks (conv, batch norm, ReLU), a 2x2 max pool and a linear head.
model = dict(type='DigitsCNN', in_channels=1, channels=(16, 32), num_classes=10, image_size=8)
