# mmengine (its usual configs, not "lazy import" ones) drops top-level functions and
# lambdas, and keeps the ones a value refers to.
def scaled(lr, batch):
    return lr * batch / 256


def act(x):
    return x


square = lambda x: x * x  # noqa: E731
lr = scaled(0.1, 512)
model = dict(act=act, post=square)
