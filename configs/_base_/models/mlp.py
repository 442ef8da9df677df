# A one-hidden-layer perceptron over the 64 pixels.
model = dict(type='DigitsMLP', in_features=64, hidden_dims=(128,), num_classes=10, dropout=0.0)
