model = dict(
    depth=50,
    head=dict(num=10, loss='ce'),
)
lr = 0.1
