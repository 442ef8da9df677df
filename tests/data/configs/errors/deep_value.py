depth = 1
for _ in range(150):
    depth = dict(inner=depth)
