# pipelines/gpus.mk: GPUS=N for the pipelines, through pipelines/gpus.sh
# (docs/SCALE.md, "The whole method on the GPUs of one node"):
#   GPUS        GPUs of this node to use (1: every command as it is)
#   GPU_IDS     the cards, shard or rank k on the k-th (0 .. GPUS-1)
#   TUNE_PORT   where lr-tune's ranks meet on 127.0.0.1 (29500)
# $(SHARDED) OUT LR-INFER ARGS...   the run in GPUS shards, joined into OUT
#                                   (the command without its -o)
# $(call RANKS,DIR) LR-TUNE ARGS... lr-tune as GPUS ranks, rank k's stderr
#                                   in DIR/tune.rank-k.log
# With GPUS > 1 each step takes every card: run make without -j (two
# trainings at once would also meet on one TUNE_PORT).
GPUS      ?= 1
TUNE_PORT ?= 29500
export GPU_IDS
GPUS_SH   := $(dir $(lastword $(MAKEFILE_LIST)))gpus.sh
SHARDED    = $(GPUS_SH) infer $(GPUS)
RANKS      = LOG_DIR=$(1) $(GPUS_SH) tune $(GPUS) $(TUNE_PORT)
