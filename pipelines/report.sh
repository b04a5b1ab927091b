#!/usr/bin/env bash
# pipelines/report.sh OUT KEY=LABEL...: the report of a pipelines/report.mk
# run (OUT/report.md, PNGs beside it): one row per KEY (base first), read
# from the files the pipelines left under OUT:
#   OUT/base/eval                         the base's scored evaluation
#   OUT/KEY/sSEED/{eval,tune-log.jsonl,times/tune}   each tuned run
#   OUT/KEY/[sSEED/]{examples.lrs,kl.log,kl-stats.tsv,times/select}   method variants
#   OUT/stage1/{expert,amateur}.lrs, times/      the shared sampling
#   OUT/sft/samples/kK{.lrs,.kept.lrs}, times/   the SFT baseline's samples
# Environment: BIN (bin), SEEDS ("1 2 3"), BETA (0.4), EXPERT (for token
# text in the trace figure), SETTINGS (a file of "name: value" lines to
# print), TRACE (index of the problem drawn in the trace figure, 0).
# Needs jq, awk, gnuplot. Prints the table on stdout.
set -euo pipefail
out=$1; shift
BIN=${BIN:-bin} SEEDS=${SEEDS:-1 2 3} BETA=${BETA:-0.4} TRACE=${TRACE:-0}
rep=$out/report
mkdir -p "$rep"
die() { echo "report: $*" >&2; exit 2; }
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else printf "-" }'; }

# ---- statistics: lr-eval compare over every row ----
args=("$out/base/eval") keys=() labels=()
for kv in "$@"; do
    k=${kv%%=*} l=${kv#*=}
    [ "$k" = base ] && continue
    keys+=("$k") labels+=("$l")
    runs=
    for s in $SEEDS; do runs+=${runs:+,}$out/$k/s$s/eval/summary.json; done
    args+=("$l=$runs")
done
"$BIN/lr-eval" compare --json "$rep/compare.jsonl.part" "${args[@]}" > "$rep/compare.md.part"
mv "$rep/compare.jsonl.part" "$rep/compare.jsonl"; mv "$rep/compare.md.part" "$rep/compare.md"

# ---- efficiency: times, problems, tokens tuned ----
t() { cat "$1" 2> /dev/null || echo 0; }
s1=$(awk '{ s += $1 } END { printf "%.1f", s }' <(t "$out/stage1/times/expert") <(t "$out/stage1/times/amateur"))
row_efficiency() { # KEY -> "sampling_s tuning_s problems tokens kept_share loss0 loss1" (mean over seeds)
    local k=$1 ex_dirs=() samp tune probs toks share l0 l1
    if [ "$k" = sft ]; then
        samp=$(cat "$out"/sft/samples/times/* 2> /dev/null | awk '{ s += $1 } END { printf "%.1f", s }')
        probs=$(for f in "$out"/sft/samples/k*.kept.lrs; do "$BIN/lr-dump" "$f" | jq -r 'select(.id) | .id'; done | sort -u | wc -l)
        toks=$(for f in "$out"/sft/samples/k*.kept.lrs; do "$BIN/lr-dump" "$f" | jq 'select(.id) | .tokens | length'; done \
               | awk '{ s += $1 } END { print s + 0 }')
        share=-
    else
        if [ -f "$out/$k/examples.lrs" ]; then ex_dirs=("$out/$k")
        else for s in $SEEDS; do ex_dirs+=("$out/$k/s$s"); done; fi
        samp=$(for d in "${ex_dirs[@]}"; do t "$d/times/select"; done | awk -v s1="$s1" '{ s += $1; n++ } END { printf "%.1f", s1 + s / n }')
        probs=$(for d in "${ex_dirs[@]}"; do "$BIN/lr-dump" "$d/examples.lrs" | jq -r 'select(.id) | .id' | sort -u | wc -l; done | mean)
        toks=$(for d in "${ex_dirs[@]}"; do "$BIN/lr-dump" --count "$d/examples.lrs"; done | mean)
        share=$(for d in "${ex_dirs[@]}"; do sed -n 's/.* kept (\([0-9.]*\)%.*/\1/p' "$d/kl.log"; done | mean)
    fi
    tune=$(for s in $SEEDS; do t "$out/$k/s$s/times/tune"; done | mean)
    if [ "$k" = lightreasoner-r2 ]; then # both rounds: round 1's sampling and tuning, then round 2's
        samp=$(for s in $SEEDS; do cat "$out/lightreasoner/times/select" "$out/$k/s$s/stage1/times/"* "$out/$k/s$s/times/select" \
               | awk '{ x += $1 } END { print x }'; done | awk -v s1="$s1" '{ s += $1; n++ } END { printf "%.1f", s1 + s / n }')
        tune=$(for s in $SEEDS; do cat "$out/lightreasoner/s$s/times/tune" "$out/$k/s$s/times/"{merge,tune} \
               | awk '{ x += $1 } END { print x }'; done | mean)
        toks=$(echo "$toks + $("$BIN/lr-dump" --count "$out/lightreasoner/examples.lrs")" | bc)
    fi
    l0=$(for s in $SEEDS; do head -n 1 "$out/$k/s$s/tune-log.jsonl" | jq .loss; done | awk '{ s += $1; n++ } END { printf "%.4g", s / n }')
    l1=$(for s in $SEEDS; do tail -n 1 "$out/$k/s$s/tune-log.jsonl" | jq .loss; done | awk '{ s += $1; n++ } END { printf "%.4g", s / n }')
    seen=$(for s in $SEEDS; do tail -n 1 "$out/$k/s$s/tune-log.jsonl" | jq .examples; done | mean)
    [ "$k" != lightreasoner-r2 ] || seen=$(echo "$seen * 2" | bc)
    echo "$samp $tune $probs $toks $seen $share $l0 $l1"
}
: > "$rep/efficiency.tsv.part"
printf 'key\tsampling_s\ttuning_s\tproblems\ttokens_tuned\texamples_seen\tkept_pct\tloss_first\tloss_last\n' > "$rep/efficiency.tsv.part"
for k in "${keys[@]}"; do
    [ -f "$out/$k/s${SEEDS%% *}/tune-log.jsonl" ] || die "$out/$k: no tuned run (run the pipeline first)"
    printf '%s\t%s\n' "$k" "$(row_efficiency "$k" | tr ' ' '\t')" >> "$rep/efficiency.tsv.part"
done
mv "$rep/efficiency.tsv.part" "$rep/efficiency.tsv"

# ---- the table ----
bench=$(jq -r -s '.[0].bench' "$rep/compare.jsonl")
pfmt='function pv(p) { return p < 0.001 ? sprintf("%.1e", p) : sprintf("%.3f", p) }'
{
    echo "| run | seeds | accuracy (%) | delta vs base [95% CI] | McNemar p | sampling (s) | tuning (s, per seed) | problems used | tokens tuned | examples seen | steps kept (%) | loss first -> last |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    jq -r --arg b "$bench" 'select(.bench == $b and .label == "base") | .acc' "$rep/compare.jsonl" \
        | awk '{ printf "| base | - | %.1f | | | | | | | | | |\n", $1 }'
    for i in "${!keys[@]}"; do
        k=${keys[$i]} l=${labels[$i]}
        jq -r --arg b "$bench" --arg l "$l" 'select(.bench == $b and .label == $l) |
            [.label, .runs, .acc, .acc_sd, .delta, .ci_lo, .ci_hi, .p, .p_min, .p_max] | @tsv' "$rep/compare.jsonl" \
          | paste - <(awk -v k="$k" -F'\t' '$1 == k' "$rep/efficiency.tsv" | cut -f 2-) \
          | awk -F'\t' "$pfmt"'{
                p = pv($8); if ($2 > 1) p = p " (" pv($9) "-" pv($10) ")"
                printf "| %s | %d | %.1f ± %.1f | %+.1f [%+.1f, %+.1f] | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %.3g -> %.3g |\n",
                    $1, $2, $3, $4, $5, $6, $7, p, $11, $12, $13, $14, $15, ($16 == "-" ? "-" : sprintf("%.1f", $16)), $17, $18 }'
    done
} > "$rep/table.md"

# ---- figures (gnuplot, PNG; the scripts stay in OUT/report/*.gp) ----
gp() { # NAME SIZE: the script on stdin -> OUT/NAME.png
    { echo "set terminal pngcairo size $2 font 'Sans,10'"; echo "set output '$out/$1.png'"; cat; } > "$rep/$1.gp"
    gnuplot "$rep/$1.gp" || die "gnuplot $rep/$1.gp failed"
}
kl_dir=
for k in lightreasoner "${keys[@]}"; do [ -f "$out/$k/kl-stats.tsv" ] && { kl_dir=$out/$k; break; }; done
figs=()
if [ -n "$kl_dir" ]; then
    gp kl-hist 900,520 <<EOF
set title 'KL(expert || amateur) of every step t >= 1 of stage 1'
set xlabel 'KL (nats; bins of 0.05)'; set ylabel 'steps'; set logscale y; set yrange [0.8:*]
set style fill solid 0.7 border -1; set key top right
set arrow from $BETA, graph 0 to $BETA, graph 1 nohead lw 2 lc rgb '#c0392b'
set label 'beta = $BETA' at $BETA, graph 0.93 offset 0.5, 0 tc rgb '#c0392b'
plot '$kl_dir/kl-stats.tsv' every ::1 using (\$1 + 0.025):(\$3 > 0 ? \$3 : 1/0):(0.05) with boxes lc rgb '#95a5a6' title 'all steps', \
     '' every ::1 using (\$1 + 0.025):(\$4 > 0 ? \$4 : 1/0):(0.05) with boxes lc rgb '#2e86c1' title 'selected (KL >= beta)'
EOF
    figs+=("![KL histogram with beta marked](kl-hist.png)")
fi
if [ -f "$out/stage1/expert.lrs" ] && [ -f "$out/stage1/amateur.lrs" ]; then
    # one problem's pair of records as streams of their own, every step's KL
    one() { "$BIN/lr-dump" --head $((TRACE + 1)) "$1" | awk -v n=$((TRACE + 2)) 'NR == 1 || NR == n'; echo '{"lrs_end": 1}'; }
    one "$out/stage1/expert.lrs" | "$BIN/lr-dump" --from-json -o "$rep/trace-e.lrs"
    one "$out/stage1/amateur.lrs" | "$BIN/lr-dump" --from-json -o "$rep/trace-a.lrs"
    "$BIN/lr-kl" -q --beta 0 "$rep/trace-e.lrs" "$rep/trace-a.lrs" | "$BIN/lr-dump" \
        | jq -r 'select(.step) | "\(.step)\t\(.kl)"' > "$rep/trace.tsv"
    xt="set xlabel 'step t'"
    if [ -n "${EXPERT:-}" ]; then # each step's token on the x axis
        "$BIN/lr-dump" "$rep/trace-e.lrs" | jq -c 'select(.tokens) | .tokens[] | [.]' | "$BIN/lr-tok" --decode "$EXPERT" \
            | jq -r 'gsub("\n"; "↵") | gsub("[\"\\\\]"; "") | if . == " " then "_" else . end' > "$rep/trace-tokens.txt"
        last=$(awk 'END { print ($1 < 80 ? $1 : 80) }' "$rep/trace.tsv")
        xt="set xtics ($(awk -v m=$((last + 1)) 'NR > 1 && NR <= m { printf "%s\"%s\" %d", (n++ ? ", " : ""), $0, NR - 1 }' "$rep/trace-tokens.txt")) font ',9' noenhanced
set xrange [0.5:$last.5]; set xlabel 'the expert token predicted at step t (up to 80 steps)'"
    fi
    q=$("$BIN/lr-dump" "$rep/trace-e.lrs" | jq -r 'select(.id) | .id')
    gp kl-trace 1400,480 <<EOF
set title "Per-step KL of one expert trace ($q): the steps with KL >= $BETA are the ones selected"
set ylabel 'KL(expert || amateur), nats'; set key top right; set grid ytics
$xt
set arrow from graph 0, first $BETA to graph 1, first $BETA nohead dt 2 lc rgb '#c0392b'
plot '$rep/trace.tsv' using 1:2 with linespoints pt 7 ps 0.5 lc rgb '#7f8c8d' title 'KL per step', \
     '' using 1:(\$2 >= $BETA ? \$2 : 1/0) with points pt 7 ps 1.3 lc rgb '#c0392b' title 'selected'
EOF
    figs+=("![per-step KL of one trace, selected steps marked](kl-trace.png)")
fi
plots=() sft_plot=
for i in "${!keys[@]}"; do
    k=${keys[$i]}
    jq -r '"\(.step)\t\(.loss)"' "$out/$k/s${SEEDS%% *}/tune-log.jsonl" > "$rep/loss-$k.tsv"
    l=${labels[$i]//\'/}
    if [ "$k" = sft ]; then sft_plot="'$rep/loss-$k.tsv' using 1:2 with lines lw 2 title '$l'"
    else plots+=("'$rep/loss-$k.tsv' using 1:2 with lines lw 2 title '$l'"); fi
done
if [ ${#plots[@]} -gt 0 ]; then
    pl=$(IFS=,; echo "${plots[*]}")
    gp loss 1300,480 <<EOF
set multiplot layout 1, $([ -n "$sft_plot" ] && echo 2 || echo 1)
set xlabel 'optimizer step'; set grid; set key top right
set title 'soft-label KL loss (seed ${SEEDS%% *})'; set ylabel 'loss'
plot $pl
$([ -n "$sft_plot" ] && echo "set title 'SFT cross-entropy per token (seed ${SEEDS%% *})'; plot $sft_plot")
unset multiplot
EOF
    figs+=("![training loss curves](loss.png)")
fi

# ---- the report ----
{
    echo "# LightReasoner in miniature: the comparison"
    echo
    echo "Accuracy on \`$bench\` ($(jq -s '.[0].problems' "$rep/compare.jsonl") problems; zero-shot, greedy, the"
    echo "Qwen2.5-Math toolkit's prompt and scoring). Tuned rows: mean ± sample sd over"
    echo "seeds $SEEDS (lr-tune's LoRA init and data order; for the random control also"
    echo "lr-kl's draw). Delta in points vs base, its 95% interval from a paired bootstrap"
    echo "over problems of the seed-averaged per-problem score (10,000 resamples);"
    echo "McNemar's exact p per seed (median, then min-max). Sampling: wall seconds of"
    echo "making the training data (method: expert + amateur + selection; SFT: every"
    echo "sample and its scoring); tuning: wall seconds of lr-tune per seed. Problems"
    echo "used: training problems that contributed at least one example; tokens tuned:"
    echo "supervised positions in the training data (method: selected steps; SFT: every"
    echo "response token of the kept samples); examples seen: training examples the"
    echo "optimizer steps consumed (method: steps; SFT: whole sequences). Wall times"
    echo "were measured with two stages running at once."
    echo
    cat "$rep/table.md"
    echo
    if [ -n "${SETTINGS:-}" ] && [ -f "$SETTINGS" ]; then
        echo "## Settings"; echo; sed 's/^/    /' "$SETTINGS"; echo
    fi
    echo "## Machine"
    echo
    echo "    $(nproc) cores: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1); load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "    $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "## Figures"
    echo
    for f in "${figs[@]}"; do echo "$f"; echo; done
    echo "## lr-eval compare"
    echo
    cat "$rep/compare.md"
    echo
    echo "Accuracy of each seed (%, in the order of SEEDS):"
    echo
    jq -r 'select(.runs > 1) | "- \(.bench), \(.label): \(.acc_runs | map(. * 10 | round / 10 | tostring) | join(", "))"' "$rep/compare.jsonl"
} > "$out/report.md.part"
mv "$out/report.md.part" "$out/report.md"
cat "$rep/table.md"
