_base_ = './base.yaml'
__own = 3
nested = dict(__inner=4)
