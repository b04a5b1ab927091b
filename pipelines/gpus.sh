#!/usr/bin/env bash
# pipelines/gpus.sh: one pipeline step over N GPUs of one node, one process
# per GPU, each seeing only its own card (CUDA_VISIBLE_DEVICES), as
# docs/SCALE.md spells out by hand. pipelines/lightreasoner.mk calls it
# with GPUS=N; with N = 1 it runs the command as it is.
#
#   gpus.sh infer N OUT LR-INFER ARGS...
#       N shards of the lr-infer run (OUT a.lrs: --shard k/N -o
#       a.shard-k-of-N.lrs, each log in a.shard-k-of-N.log), then `lr-dump --cat -o OUT` of
#       them (the unsharded run's stream), the shard files removed. A
#       rerun after a failure continues every shard (lr-infer's FILE.part;
#       a finished shard is kept as it is); an OUT already there is left
#       to the unsharded command (lr-infer -o OUT: done if it holds this
#       run).
#   gpus.sh tune N PORT LR-TUNE ARGS...
#       lr-tune data parallel: ranks 1..N-1 in the background, rank 0
#       here, meeting at 127.0.0.1:PORT (--rank k --world N --master);
#       each rank's log in its own file next to where rank 0 writes
#       (LOG_DIR, default the current folder: tune.rank-k.log).
#
# GPU_IDS (default 0 .. N-1) lists the cards, shard or rank k taking the
# k-th. Exit status: the first failing process's (its name and the end of
# its log on stderr), else 0.
set -u
die() { echo "gpus.sh: $*" >&2; exit 1; }
[ $# -ge 4 ] || die "usage: gpus.sh infer N OUT CMD... | gpus.sh tune N PORT CMD... (see the top of this file)"
mode=$1 n=$2 arg=$3
shift 3
[[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"
read -r -a ids <<< "${GPU_IDS:-$(seq -s ' ' 0 $((n - 1)))}"
[ "${#ids[@]}" -ge "$n" ] || die "GPU_IDS lists ${#ids[@]} cards for $n processes"

# wait_all WHAT: waits for every pid in PIDS (WHAT i of N is PIDS[i], its
# log LOGS[i]), returns the first nonzero status after saying whose it was
wait_all() {
    local i rc first=0
    for i in "${!PIDS[@]}"; do
        wait "${PIDS[$i]}"
        rc=$?
        if [ "$rc" != 0 ] && [ "$first" = 0 ]; then
            first=$rc
            if [ -n "${LOGS[$i]}" ]; then
                echo "gpus.sh: $1 $i of $n failed (exit $rc); the end of its log, ${LOGS[$i]}:" >&2
                tail -n 5 "${LOGS[$i]}" >&2
            else
                echo "gpus.sh: $1 $i of $n failed (exit $rc): its messages are above" >&2
            fi
        fi
    done
    return "$first"
}

# background processes of a script ignore SIGINT: pass an interrupt on as
# SIGTERM, which lr-infer and lr-tune take as theirs (FILE.part kept)
PIDS=()
trap 'kill -TERM "${PIDS[@]}" 2> /dev/null; wait; exit 130' INT TERM

case $mode in
infer)
    # one process: the command as it is; an OUT already there (a joined
    # stream from an earlier run): the unsharded command takes it over, as
    # for any output of its (nothing to do when it holds this run)
    [ "$n" = 1 ] || [ -e "$arg" ] && exec "$@" -o "$arg"
    LOGS=() shards=()
    for k in $(seq 0 $((n - 1))); do
        s=${arg%.lrs}.shard-$k-of-$n.lrs
        shards+=("$s") LOGS+=("${s%.lrs}.log")
        CUDA_VISIBLE_DEVICES=${ids[$k]} "$@" --shard "$k/$n" -o "$s" 2> "${LOGS[$k]}" &
        PIDS+=($!)
    done
    wait_all shard || exit $?
    # lr-dump sits beside lr-infer
    "$(dirname "$1")/lr-dump" --cat -o "$arg" "${shards[@]}" || exit $?
    rm -f "${shards[@]}" "${LOGS[@]}"
    ;;
tune)
    [ "$n" = 1 ] && exec "$@"
    [[ $arg =~ ^[0-9]+$ ]] || die "PORT must be a number, not '$arg'"
    LOGS=()
    d=${LOG_DIR:-.}
    for k in $(seq 1 $((n - 1))); do
        LOGS[$k]=$d/tune.rank-$k.log
        CUDA_VISIBLE_DEVICES=${ids[$k]} "$@" --rank "$k" --world "$n" --master "127.0.0.1:$arg" 2> "${LOGS[$k]}" &
        PIDS[$k]=$!
    done
    LOGS[0]= # rank 0's stderr is this script's
    CUDA_VISIBLE_DEVICES=${ids[0]} "$@" --rank 0 --world "$n" --master "127.0.0.1:$arg" &
    PIDS[0]=$!
    wait_all rank || exit $?
    ;;
*) die "unknown mode '$mode' (infer or tune)" ;;
esac
