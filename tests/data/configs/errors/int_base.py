depth = 50
model = 1
