# The paper's comparison in miniature, as one report: the base expert, the
# method, the SFT baseline, the ablations and the controls, each tuned run
# under every seed of SEEDS, then OUT/report.md with its PNGs beside it
# (accuracy, delta vs base with a paired-bootstrap interval and McNemar's
# p, wall time of sampling and tuning, problems used, tokens tuned; the KL
# histogram, one trace's per-step KL, the loss curves).
#
#   make -f pipelines/report.mk EXPERT=... AMATEUR=... [ROWS="..."] [SEEDS="1 2 3"]
#
# Rows (ROWS, in this order by default): lightreasoner sft no-select
# no-contrast no-contrast-onehot no-both random lowest (ablations.mk and
# sft.mk describe each); ROUNDS=2 adds lightreasoner-r2. Every knob of common.mk, ablations.mk and sft.mk is
# a variable here too; an interrupted run, rerun, continues.
.DEFAULT_GOAL := report
ROWS ?= lightreasoner sft no-select no-contrast no-contrast-onehot no-both random lowest
# ROUNDS=2: one more row, each seed's tuned expert tuned again as the expert
# of a second round (ablations.mk: lightreasoner-r2)
ROUNDS ?= 1
ALL_ROWS = $(ROWS) $(if $(filter 2,$(ROUNDS)),lightreasoner-r2)
# the method rows among ROWS are the variants ablations.mk builds
VARIANTS := $(filter-out sft,$(ALL_ROWS))
LR_PIPELINE_COMMON := 1
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk
include $(dir $(lastword $(MAKEFILE_LIST)))ablations.mk
include $(dir $(lastword $(MAKEFILE_LIST)))sft.mk
.DEFAULT_GOAL := report

TRACE ?= 0
PIPELINES := $(dir $(lastword $(MAKEFILE_LIST)))

row_evals = $(foreach r,$(ALL_ROWS),$(foreach s,$(SEEDS),$(OUT)/$(r)/s$(s)/eval/summary.json))
row_args = $(foreach r,$(ALL_ROWS),'$(r)=$(LABEL_$(r))')

report: $(OUT)/report.md
$(OUT)/report.md: $(OUT)/base/eval/summary.json $(row_evals)
	$(Q)mkdir -p $(OUT)/report
	{ echo "expert: $(EXPERT)"; echo "amateur: $(AMATEUR)"; echo "training problems: first $(N) of $(DATA)"
	  echo "sampling: greedy, $(MAX_NEW) new tokens; beta $(BETA), alpha $(ALPHA)"
	  echo "SFT: first $(SFT_N) problems x $(SFT_SAMPLES) samples at T $(SFT_TEMP), top-p $(SFT_TOP_P), $(SFT_MAX_NEW) new tokens"
	  echo "lr-tune (every tuned row): $(TUNE_FLAGS)"; echo "lr-tune (SFT): $(SFT_TUNE_FLAGS) --objective sft"
	  echo "seeds: $(SEEDS)"; echo "evaluation: first $(EVAL_N) rows of $(EVAL_DATA), $(EVAL_MAX_NEW) new tokens"
	  echo "devices: lr-infer --device $(DEVICE)$(if $(THREADS), --threads $(THREADS))$(if $(filter-out 1,$(GPUS)), over $(GPUS) GPUs (shards and ranks))"; } > $(OUT)/report/settings.txt
	BIN=$(BIN) SEEDS="$(SEEDS)" BETA=$(BETA) EXPERT=$(EXPERT) TRACE=$(TRACE) SETTINGS=$(OUT)/report/settings.txt \
	    $(PIPELINES)report.sh $(OUT) $(row_args)
	echo
	echo "report: $(OUT)/report.md (figures beside it)"

.PHONY: report
