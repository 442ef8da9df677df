marker = slice(1, 2)
