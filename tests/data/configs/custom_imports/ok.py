custom_imports = dict(imports=['trackcfg_test_plugin'], allow_failed_imports=False)
