"""A module imported by custom_imports in tests; records that it ran."""

IMPORTED = True
