lr = 0.1


def schedule(epoch):
    return lr * 0.1**epoch


warmup = lambda it: min(1.0, it / 500)  # noqa: E731
