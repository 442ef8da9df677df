"""The config engine: read, inherit, merge, substitute, hash and trace mmcv-style configs."""
