# a base that is not UTF-8
name = "café"
