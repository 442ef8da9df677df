# Two levels down: the pipeline that child.py changed through its alias, changed again.
_base_ = './child.py'
pipeline = _base_.test_pipeline
pipeline.insert(1, dict(type='Resize', scale=(1333, 800)))
