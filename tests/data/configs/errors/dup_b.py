# second base
model = dict(b=2)
