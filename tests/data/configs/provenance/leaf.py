_base_ = ['./mid.yaml']
model = dict(
    head=dict(_delete_=True, num=5),
)
lr = {{ _base_.lr }}
