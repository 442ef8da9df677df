_deprecation_ = dict(expected='new.py', reference='https://example.org/x')
a = 1
