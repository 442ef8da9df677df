"""A stand-in for an installed OpenMMLab package holding configs (tests only)."""
