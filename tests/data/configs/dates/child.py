_base_ = './base.yaml'
first_stop = _base_.schedule.stops[0]
