_base_ = './base.py'
optimizer = dict(_delete_=True, type='SGD', extra=dict(_delete_=True, a=1))
pipeline = [dict(type='A', _delete_=True)]
