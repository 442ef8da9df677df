_base_ = './dup_a.py'
_delete_ = True
