_base_ = './latin1_base.py'
