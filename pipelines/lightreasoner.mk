# The LightReasoner method end to end, as Make targets over files, so an
# interrupted run continues where it stopped (lr-infer -o F writes F.part,
# resumes it, and renames it onto F only when complete).
#
#   make -f pipelines/lightreasoner.mk EXPERT=path/to/Qwen2.5-Math-1.5B \
#        AMATEUR=path/to/Qwen2.5-0.5B DATA=data/gsm8k/train.jsonl
#
# Variables (defaults follow docs/METHOD.md):
#   EXPERT, AMATEUR   Hugging Face model folders sharing one tokenizer
#   DATA              training problems (JSON lines); N = how many (1000)
#   MAX_NEW           expert tokens per problem (128)
#   BETA, ALPHA       KL threshold (0.4), plausibility mask (0.2)
#   SELECT, TARGET    kl|random|lowest, contrast|expert|onehot (ablations)
#   STEPS, TUNE_BATCH, ACCUM  optimizer steps (1000) of TUNE_BATCH (8) x ACCUM (2)
#                     examples, the learning rate decaying linearly to 0 at
#                     step STEPS (the examples cycle if there are fewer than
#                     STEPS x 16), as the paper and the authors' script train
#   TUNE_FLAGS        extra lr-tune flags (lr, LoRA rank, --reference-quirks, ...)
#   EVAL_SETS         benchmarks scored before/after: the paper's seven (data/SET/test.jsonl)
#   EVAL_DATA         one benchmark file to score instead of EVAL_SETS
#   EVAL_N            rows of each benchmark scored (empty: all)
#   MMLU_SHOTS        mmlu_stem's examples: 5 (the toolkit's script, default) or 0 (the authors' command)
#   OUT               work folder (build/run)
#   DEVICE            lr-infer's and lr-tune's backend: auto (cuda when a GPU is present), cpu, cuda
#   BATCH             problems per forward (empty: lr-infer's default, 8 cpu / 64 cuda)
#   GPUS              GPUs of this node to use (1): every lr-infer run in GPUS
#                     shards, one process per card, joined by lr-dump --cat;
#                     lr-tune as GPUS data-parallel ranks (TUNE_BATCH a
#                     multiple of GPUS) meeting at 127.0.0.1:TUNE_PORT (29500);
#                     GPU_IDS picks the cards (0 .. GPUS-1); pipelines/gpus.mk
include $(dir $(lastword $(MAKEFILE_LIST)))gpus.mk
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c # a failing lr-dump in `lr-dump | lr-eval` fails the target
BIN      ?= bin
OUT      ?= build/run
EXPERT   ?= $(error set EXPERT=model folder)
AMATEUR  ?= $(error set AMATEUR=model folder)
DATA     ?= data/gsm8k/train.jsonl
N        ?= 1000
MAX_NEW  ?= 128
BETA     ?= 0.4
ALPHA    ?= 0.2
SELECT   ?= kl
TARGET   ?= contrast
BATCH    ?=
DEVICE   ?= auto
INFER_RUN = --device $(DEVICE) $(if $(BATCH),--batch $(BATCH))
STEPS    ?= 1000
TUNE_BATCH ?= 8
ACCUM    ?= 2
SAVE_EVERY ?= 200
TUNE_FLAGS ?=
EVAL_SETS ?= gsm8k math500 svamp asdiv minerva_math olympiadbench mmlu_stem
EVAL_DATA ?=
EVAL_N   ?=
MMLU_SHOTS ?= 5
EVAL_MAX_NEW ?= 2048
INFER_FLAGS ?=
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# Each stage prints its wall time and keeps it in OUT/times/STAGE;
# $(call begin,STAGE) opens a recipe line, $(call end,STAGE) closes it.
begin = echo "pipeline: stage $(1) ..." >&2; _t0=$$EPOCHREALTIME;
end = ; _s=$$(awk -v a=$$_t0 -v b=$$EPOCHREALTIME 'BEGIN { printf "%.1f", b - a }'); mkdir -p $(OUT)/times; \
    echo $$_s > $(OUT)/times/$(1); echo "pipeline: stage $(1): $$_s s" >&2

all: $(OUT)/summary.md

# Stage 1: the expert generates and records its distributions ...
$(OUT)/expert.lrs: | $(OUT)
	$(call begin,sample-expert) $(SHARDED) $@ $(BIN)/lr-infer --model $(EXPERT) --data $(DATA) --limit $(N) \
	    --max-new-tokens $(MAX_NEW) $(INFER_RUN) $(INFER_FLAGS) $(call end,sample-expert)
# ... the amateur reads the same tokens ...
$(OUT)/amateur.lrs: $(OUT)/expert.lrs
	$(call begin,sample-amateur) $(SHARDED) $@ $(BIN)/lr-infer --model $(AMATEUR) --follow $< $(INFER_RUN) $(INFER_FLAGS) \
	    $(call end,sample-amateur)
# ... the steps where they disagree become soft-label examples.
$(OUT)/examples.lrs: $(OUT)/expert.lrs $(OUT)/amateur.lrs
	$(call begin,select) $(BIN)/lr-kl --beta $(BETA) --select $(SELECT) --stats $(OUT)/kl-stats.tsv $^ \
	    | $(BIN)/lr-contrast --alpha $(ALPHA) --target $(TARGET) > $@.part && mv $@.part $@ $(call end,select)
	@echo "pipeline: problems used $$($(BIN)/lr-dump $@ | jq -r 'select(.id) | .id' | sort -u | wc -l) of $$($(BIN)/lr-dump --count $<);" \
	    "tokens tuned (selected steps) $$($(BIN)/lr-dump --count $@)" | tee $(OUT)/efficiency.txt >&2

# Stage 2: LoRA on the expert, merged for evaluation.
$(OUT)/adapter/adapter_config.json: $(OUT)/examples.lrs
	$(call begin,tune) $(call RANKS,$(OUT)) $(BIN)/lr-tune --model $(EXPERT) --device $(DEVICE) --objective soft-kl --out $(OUT)/adapter --force --resume \
	    --max-steps $(STEPS) --batch $(TUNE_BATCH) --accum $(ACCUM) --save-every $(SAVE_EVERY) \
	    --log $(OUT)/tune-log.jsonl $(TUNE_FLAGS) $< $(call end,tune)
	@tail -n 1 $(OUT)/tune-log.jsonl | jq -r '"pipeline: tuned \(.step) optimizer steps, \(.examples) examples seen, last loss \(.loss)"' >&2
$(OUT)/merged/config.json: $(OUT)/adapter/adapter_config.json
	$(BIN)/lr-merge --force $(EXPERT) $(OUT)/adapter $(OUT)/merged

# Evaluation: the expert before and after, generated by lr-infer with the
# Qwen2.5-Math toolkit's prompts and scored by its rules (lr-eval), on each
# benchmark of EVAL_SETS (or the one file EVAL_DATA). The first EVAL_N rows
# of each are copied under OUT so ids and layout stay those of the
# benchmark (the layout is the file's folder name).
EVAL_FILES = $(if $(EVAL_DATA),$(EVAL_DATA),$(foreach s,$(EVAL_SETS),data/$(s)/test.jsonl))
layout_of = $(notdir $(patsubst %/,%,$(dir $(1))))
EVAL_LAYOUTS = $(foreach f,$(EVAL_FILES),$(call layout_of,$(f)))
# (greedy whatever the model's generation_config.json says: the toolkit
# passes temperature 0, top_p 1, and stops at <|im_end|>, <|endoftext|>
# and the text </s>)
EVAL_INFER = --preset toolkit --shots $(MMLU_SHOTS) --temperature 0 --top-p 1 --max-new-tokens $(EVAL_MAX_NEW) \
             --max-context $(EVAL_CONTEXT) --eos '<|im_end|>' --eos '<|endoftext|>' --stop '</s>' $(INFER_RUN) $(INFER_FLAGS)
EVAL_CONTEXT ?= 4096
# $(call eval_rules,FILE,LAYOUT): the subset, then base and tuned scores
define eval_rules
$(OUT)/eval-data/$(2)/$(notdir $(1)): $(1)
	mkdir -p $$(dir $$@) && $(if $(EVAL_N),head -n $(EVAL_N),cat) $$< > $$@.part && mv $$@.part $$@
$(OUT)/eval-base/$(2)/summary.json: $(OUT)/eval-data/$(2)/$(notdir $(1))
	$(SHARDED) $(OUT)/eval-base-$(2).lrs $(BIN)/lr-infer --model $(EXPERT) --data $$< $(EVAL_INFER)
	mkdir -p $(OUT)/eval-base && $(BIN)/lr-eval score --pred $(OUT)/eval-base-$(2).lrs --data $$< --label base --out-dir $$(dir $$@)
$(OUT)/eval-tuned/$(2)/summary.json: $(OUT)/eval-data/$(2)/$(notdir $(1)) $(OUT)/merged/config.json
	$(SHARDED) $(OUT)/eval-tuned-$(2).lrs $(BIN)/lr-infer --model $(OUT)/merged --data $$< $(EVAL_INFER)
	mkdir -p $(OUT)/eval-tuned && $(BIN)/lr-eval score --pred $(OUT)/eval-tuned-$(2).lrs --data $$< --label tuned --out-dir $$(dir $$@)
endef
$(foreach f,$(EVAL_FILES),$(eval $(call eval_rules,$(f),$(call layout_of,$(f)))))
$(OUT)/summary.md: $(foreach l,$(EVAL_LAYOUTS),$(OUT)/eval-base/$(l)/summary.json $(OUT)/eval-tuned/$(l)/summary.json)
	: > $@.part
	for l in $(EVAL_LAYOUTS); do echo "## $$l" >> $@.part; \
	    $(BIN)/lr-eval compare $(OUT)/eval-base/$$l/ $(OUT)/eval-tuned/$$l/ >> $@.part; echo >> $@.part; done
	{ cat $(OUT)/efficiency.txt; for t in sample-expert sample-amateur select tune; do \
	    echo "wall time $$t: $$(cat $(OUT)/times/$$t 2> /dev/null || echo -) s"; done; } >> $@.part
	mv $@.part $@; cat $@

$(OUT):
	mkdir -p $@

.PHONY: all
.DELETE_ON_ERROR:
