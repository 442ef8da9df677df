"""Hooks: the base class and the built-in hooks under mmcv's names."""
