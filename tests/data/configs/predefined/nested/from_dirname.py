_base_ = '{{ fileDirname }}/../vars.py'
nested = True
