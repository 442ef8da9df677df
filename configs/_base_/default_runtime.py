# Runtime defaults shared by every digits experiment.
# `custom_imports` fills the DATASETS/MODELS registries with trackcfg's zoo; config
# tools (show, hash, blame, diff) read it but never import it.
custom_imports = dict(imports=['trackcfg.zoo'], allow_failed_imports=False)

seed = 0
deterministic = True

# mmcv 1.x workflow: one training epoch, then one validation epoch (val_step).
workflow = [('train', 1), ('val', 1)]

checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=10, hooks=[dict(type='TextLoggerHook')])
log_level = 'INFO'
load_from = None
resume_from = None
