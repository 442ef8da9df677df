_base_ = '../_base_/models/retina.py'
optimizer = dict(type='SGD', lr=0.01)
