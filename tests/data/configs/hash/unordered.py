# Values whose iteration order depends on PYTHONHASHSEED: sets of strings and a frozenset.
classes = {'person', 'car', 'bicycle', 'dog', 'cat', 'bus', 'train', 'boat'}
ignore = frozenset({'crowd', 'difficult', 'truncated'})
model = dict(type='Net', tags={'a', 'b', 'c', 'd'}, depth=50)
