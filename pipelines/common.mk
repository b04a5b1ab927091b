# Shared by pipelines/ablations.mk, sft.mk and report.mk: the variables
# every variant reads, the timed-stage helpers, the evaluation subset and
# the base model's evaluation (made once, the reference of every delta).
#
# Every target is a file written under a temporary name and renamed into
# place as the stage's last step, so an interrupted or failed run never
# leaves a file that a rerun would take as complete; `make` reruns only
# what is missing. A failing stage prints "pipeline: stage NAME failed".
#
# Variables (make VAR=value):
#   EXPERT, AMATEUR   Hugging Face model folders sharing one tokenizer
#   DATA              training problems (gsm8k layout: DIR/gsm8k/train.jsonl)
#   N                 problems sampled for the method (first N of DATA)
#   MAX_NEW           expert tokens per problem in sampling (128)
#   EVAL_DATA, EVAL_N the test set and how many of its rows are scored
#   EVAL_MAX_NEW      tokens per evaluation answer
#   SEEDS             seeds of every tuned run (lr-tune's LoRA init and data
#                     order; lr-kl's draw for the random control)
#   TUNE_FLAGS        lr-tune flags shared by every tuned run (steps, lr, ...)
#   DEVICE, BATCH, THREADS   lr-infer's backend, problems per forward, CPU threads
#   GPUS, GPU_IDS, TUNE_PORT every lr-infer run in GPUS shards and every lr-tune
#                     as GPUS ranks, one card each (pipelines/gpus.mk; no -j then)
#   OUT               work folder
#   V                 V=1 echoes every command (stages print their names anyway)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.ONESHELL:
.DELETE_ON_ERROR:

include $(dir $(lastword $(MAKEFILE_LIST)))gpus.mk
BIN      ?= bin
OUT      ?= build/report
EXPERT   ?= $(error set EXPERT=model folder)
AMATEUR  ?= $(error set AMATEUR=model folder)
DATA     ?= examples/arith/data/gsm8k/train.jsonl
N        ?= 1000
MAX_NEW  ?= 128
EVAL_DATA ?= examples/arith/data/gsm8k/test.jsonl
EVAL_N   ?= 1000000
EVAL_MAX_NEW ?= 256
SEEDS    ?= 1 2 3
TUNE_FLAGS ?= --lr 5e-5 --batch 8 --accum 2 --max-steps 1000
DEVICE   ?= auto
BATCH    ?=
THREADS  ?=
INFER_RUN = --device $(DEVICE) $(if $(BATCH),--batch $(BATCH)) $(if $(THREADS),--threads $(THREADS))
INFER_FLAGS ?=
# the commands are echoed with V=1
Q = $(if $(V),,@)

# $(call stage_begin,NAME): the first line of a timed recipe. Prints the
# start, names the stage if any later command fails.
stage_begin = $(Q)echo "pipeline: stage $(1) ..." >&2; _t0=$$EPOCHREALTIME; \
    trap 'echo "pipeline: stage $(1) failed (making $@)" >&2' ERR
# $(call stage_end,NAME,TIMEFILE): records the stage's wall seconds in
# TIMEFILE (read by the report) and prints them.
stage_end = _s=$$(awk -v a=$$_t0 -v b=$$EPOCHREALTIME 'BEGIN { printf "%.1f", b - a }'); \
    mkdir -p $(dir $(2)); echo "$$_s" > $(2).part; mv $(2).part $(2); \
    echo "pipeline: stage $(1): $$_s s" >&2

# The evaluation: the first EVAL_N rows of EVAL_DATA copied under OUT (ids
# and layout stay the benchmark's), generated greedily with the Qwen2.5-Math
# toolkit's prompt, scored by its rules (lr-eval score: results.jsonl with
# one verdict per problem, summary.json).
EVAL_LAYOUT = $(notdir $(patsubst %/,%,$(dir $(EVAL_DATA))))
EVAL_SUBSET = $(OUT)/eval-data/$(EVAL_LAYOUT)/$(notdir $(EVAL_DATA))
# (greedy whatever generation_config.json says, stopping where the toolkit
# stops: <|im_end|>, <|endoftext|> and the text </s>)
EVAL_INFER = --preset toolkit --temperature 0 --top-p 1 --max-new-tokens $(EVAL_MAX_NEW) \
             --eos '<|im_end|>' --eos '<|endoftext|>' --stop '</s>' $(EVAL_FLAGS) $(INFER_RUN) $(INFER_FLAGS)
# scoring needs only the chosen tokens, not the distributions
EVAL_FLAGS ?= --top-k-max 1

$(EVAL_SUBSET): $(EVAL_DATA)
	mkdir -p $(dir $@)
	head -n $(EVAL_N) $< > $@.part
	mv $@.part $@

# $(call eval_rule,DIR,LABEL,MODEL_FLAGS,DEPS): DIR/eval/summary.json from
# lr-infer MODEL_FLAGS. Tuned runs pass --adapter: the LoRA is folded into
# the weights at load time in float32 (what lr-merge --dtype f32 writes), so
# base and tuned are generated at the same precision.
define eval_rule
$(1)/eval/summary.json: $(EVAL_SUBSET) $(4)
	$$(call stage_begin,eval $(2))
	rm -rf $(1)/eval $(1)/eval.part
	mkdir -p $(1)
	$(SHARDED) $(1)/eval.lrs $(BIN)/lr-infer $(3) --data $(EVAL_SUBSET) $(EVAL_INFER)
	$(BIN)/lr-dump $(1)/eval.lrs | $(BIN)/lr-eval score --pred - --data $(EVAL_SUBSET) --label '$(2)' \
	    --out-dir $(1)/eval.part 2> $(1)/eval.log || { cat $(1)/eval.log >&2; false; }
	mv $(1)/eval.part $(1)/eval
	$$(call stage_end,eval $(2),$(1)/times/eval)
endef

$(eval $(call eval_rule,$(OUT)/base,base,--model $(EXPERT)))

# $(call tune_rule,DIR,LABEL,INPUTS,FLAGS[,MODEL]): DIR/adapter from lr-tune
# of MODEL (EXPERT) on INPUTS; its per-step log in DIR/tune-log.jsonl and
# its wall time in DIR/times/tune. A half-made adapter (the run stopped) is
# removed first, and with it the evaluation it would have fed.
define tune_rule
$(1)/adapter/adapter_config.json: $(3) $(if $(5),$(5)/config.json)
	$$(call stage_begin,tune $(2))
	rm -rf $(1)/adapter $(1)/adapter.part $(1)/eval.lrs
	mkdir -p $(1)
	$(call RANKS,$(1)) $(BIN)/lr-tune --model $(or $(5),$(EXPERT)) --out $(1)/adapter.part --log $(1)/tune-log.jsonl.part $(4) $(3) \
	    2> $(1)/tune.log || { tail -n 3 $(1)/tune.log >&2; false; }
	mv $(1)/tune-log.jsonl.part $(1)/tune-log.jsonl
	mv $(1)/adapter.part $(1)/adapter
	$$(call stage_end,tune $(2),$(1)/times/tune)
$(call eval_rule,$(1),$(2),--model $(or $(5),$(EXPERT)) --adapter $(1)/adapter,$(1)/adapter/adapter_config.json)
endef
