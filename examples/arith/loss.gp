# Training loss (mean next-token cross-entropy, nats) of both models against
# documents seen. Input: build/{expert,amateur}.loss.tsv (documents, loss).
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
plot "build/expert.loss.tsv" using 1:2 with lines lw 1.5 title "expert (0.87M params, 1500 x 16 docs)", \
     "build/amateur.loss.tsv" using 1:2 with lines lw 1.5 title "amateur (0.14M params, 375 x 32 docs)"
