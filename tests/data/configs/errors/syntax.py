a = dict(
    b = = 1)
