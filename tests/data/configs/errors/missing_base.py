_base_ = ['./nope.py']
