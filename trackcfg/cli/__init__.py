"""The `trackcfg` command line."""
