import json,sys
a=[json.loads(l) for l in open(sys.argv[1])]
b=[json.loads(l) for l in open(sys.argv[2])]
ne=nc=0
from collections import Counter
cc=Counter()
for x,y in zip(a,b):
    if x['extracted']!=y['extracted']:
        ne+=1
        if ne<=int(sys.argv[3]): print('EXT', x['bench'], repr(x['gold']), '| ref', repr(x['extracted']), '| c', repr(y['extracted']))
    if x['correct']!=y['correct']:
        nc+=1; cc[(x['bench'],x['correct'])]+=1
        if nc<=int(sys.argv[4]): print('COR', x['bench'], 'ref',x['correct'], repr(x['extracted']), 'vs gold', repr(x['gold']), '| c', repr(y['extracted']))
print(len(a), 'extract diffs', ne, 'verdict diffs', nc, cc)
print('ref correct', sum(x['correct'] for x in a), 'c correct', sum(y['correct'] for y in b))
