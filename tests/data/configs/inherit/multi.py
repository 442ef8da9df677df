_base_ = ['./base_a.py', './base_b.yaml']
b = 3
