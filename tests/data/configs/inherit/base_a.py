a = dict(x=1, y=dict(z=2))
items = [1, 2, 3]
