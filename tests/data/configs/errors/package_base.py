_base_ = 'pkg::configs/x.py'
