ok = 1
loop = [1]
loop.append(loop)
