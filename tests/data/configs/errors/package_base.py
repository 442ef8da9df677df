_base_ = 'trackcfg_no_such_pkg::configs/x.py'
