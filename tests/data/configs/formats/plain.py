model = dict(type='Net', depth=50, size=(224, 224), scales=[1, 2])
lr = 0.1
name = 'plain'
