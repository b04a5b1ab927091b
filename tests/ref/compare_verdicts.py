#!/usr/bin/env python3
"""compare_verdicts.py REF.jsonl C.jsonl N_EXT N_VERDICT: line-by-line
comparison of "extracted" and "correct" between the reference scorer and
lr-eval judge; prints up to N differences of each kind and the totals."""
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
