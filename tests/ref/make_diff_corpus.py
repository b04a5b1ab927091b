#!/usr/bin/env python3
"""Writes a large differential corpus of judge lines (stdout) from the seven
benchmark files: gold solutions as predictions (mostly right), neighbours'
solutions and boxed answers (mostly wrong), formulas, multiple-choice
phrasings. Score it with tests/ref/grader_ref.py and `lr-eval judge`, then
tests/ref/compare_verdicts.py (docs/EVAL.md, "Regenerating goldens").
Usage: make_diff_corpus.py [DATA_DIR] (default data/)."""
import json
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import grader_ref as G  # noqa: E402

D = (sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "data")) + "/"
def rows(p):
    return [json.loads(l) for l in open(D+p) if l.strip()]
out=[]
m=rows('math500/test.jsonl')
for i,r in enumerate(m):
    out.append(dict(bench='math500', prediction=r['solution'], gold=r['answer']))
    out.append(dict(bench='math500', prediction=m[(i+1)%len(m)]['solution'], gold=r['answer']))
    out.append(dict(bench='math500', prediction='The final answer is $\\boxed{%s}$.'%m[(i+7)%len(m)]['answer'], gold=r['answer']))
mi=rows('minerva_math/test.jsonl')
for i,r in enumerate(mi):
    g=G.extract_answer(r['solution'],'minerva_math')
    out.append(dict(bench='minerva_math', prediction=r['solution'], gold=g))
    out.append(dict(bench='minerva_math', prediction=mi[(i+1)%len(mi)]['solution'], gold=g))
o=rows('olympiadbench/test.jsonl')
for i,r in enumerate(o):
    g=r['final_answer'][0].strip('$')
    out.append(dict(bench='olympiadbench', prediction=r['solution'][0], gold=g))
    out.append(dict(bench='olympiadbench', prediction='So the answer is $\\boxed{%s}$'%o[(i+3)%len(o)]['final_answer'][0].strip('$'), gold=g))
    out.append(dict(bench='olympiadbench', prediction='So the answer is $\\boxed{%s}$'%r['final_answer'][0].strip('$'), gold=g))
gs=rows('gsm8k/test.jsonl')
for i,r in enumerate(gs[:400]):
    g=r['answer'].split('####')[1]
    out.append(dict(bench='gsm8k', prediction=r['answer'], gold=g))
    out.append(dict(bench='gsm8k', prediction=gs[i+1]['answer'].replace('####','The answer is'), gold=g))
sv=rows('svamp/test.jsonl')
for i,r in enumerate(sv[:300]):
    out.append(dict(bench='svamp', prediction='%s = %s'%(r['Equation'], r['Answer']), gold=r['Answer']))
    out.append(dict(bench='svamp', prediction='\\boxed{%s}'%(sv[i+1]['Answer']), gold=r['Answer']))
ad=rows('asdiv/test.jsonl')
for i,r in enumerate(ad[:600]):
    g=re.sub(r"\(.*?\)", "", r['answer'])
    out.append(dict(bench='asdiv', prediction='We have %s. The answer is %s.'%(r['formula'], r['answer']), gold=g))
    out.append(dict(bench='asdiv', prediction='$\\boxed{%s}$'%ad[i+1]['answer'], gold=g))
mm=rows('mmlu_stem/test.jsonl')
outs=['The answer is (%s).','The answer is %s','\\boxed{%s}','I think the correct choice is %s because...','(%s) is right. The answer is (B)','Answer: %s']
for i,r in enumerate(mm[:300]):
    L='ABCD'[(i*7)%4]
    out.append(dict(bench='mmlu_stem', prediction=outs[i%len(outs)]%L, gold='ABCD'[r['answer']]))
for r in out: print(json.dumps(r, ensure_ascii=False))
