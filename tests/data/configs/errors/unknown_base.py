_base_ = './dup_a.py'
x = dict(
    y={{ _base_.model.b }})
