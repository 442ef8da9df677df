_base_ = './dup_a.py'
model = dict(
    _delete_='yes', c=1)
