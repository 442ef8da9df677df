custom_imports = dict(imports=['trackcfg_no_such_module'], allow_failed_imports='no')
