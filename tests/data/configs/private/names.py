import math
import os.path as osp
from collections import OrderedDict
from math import sqrt
from posixpath import basename


def helper(x):
    return x * 2


__scale = 3
value = helper(__scale) + math.floor(2.5)
joined = osp.join('a', 'b')
kind = OrderedDict
squares = [i * i for i in range(4)]
