# Training loss (mean next-token cross-entropy, nats) of both models against
# documents seen: each step's loss (thin) and its mean over 20 steps. Input:
# build/{expert,amateur}.loss.tsv (documents, loss, 20-step mean). The spike
# at 64,000 documents is the change of corpus (a fresh AdamW, a new line form).
# Usage: gnuplot -e "out='loss.png'" loss.gp
if (!exists("out")) out = "loss.png"
set terminal pngcairo size 900,520 font ",11"
set output out
set title "arith world: pretraining loss (lr-tune --full --objective lm)"
set xlabel "documents seen"
set ylabel "loss (nats per token)"
set logscale y
set grid
set key top right
plot "build/expert.loss.tsv" using 1:2 with lines lc rgb "#a0c0e8" notitle, \
     "build/amateur.loss.tsv" using 1:2 with lines lc rgb "#f0b8a0" notitle, \
     "build/expert.loss.tsv" using 1:3 with lines lw 2 lc rgb "#1f60b0" title "expert (0.87M parameters; 1400 + 2600 steps x 16 documents, first corpus; 600, second)", \
     "build/amateur.loss.tsv" using 1:3 with lines lw 2 lc rgb "#c04010" title "amateur (0.14M parameters; 375 x 32 documents, second corpus)"
