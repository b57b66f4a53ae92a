#!/usr/bin/env bash
# The SmolLM2-135M study end to end on one GPU box (experiments/smollm2/README.md):
#   1. seqkd: the teacher answers the training and held-out prompts;
#   2. every study's runs at once on the one GPU (each sweep through the submitit_local launcher, the studies in
#      parallel: the 135M pair leaves most of an H200 idle, so concurrent runs cost little each);
#   3. DPO from the loss study's KL + CE student;
#   4. eval.py on every run (quality, recall, greedy samples) in parallel, then throughput and speculative decoding
#      one run at a time (timings need the GPU to themselves);
#   5. the report of each study.
# usage: bash experiments/smollm2/run_study.sh [hydra overrides for every run, e.g. model.path=/dir/with/gguf]
#   STUDIES="ratio init loss mixer backend stepwise"   which studies to run
#   LAUNCH="hydra/launcher=submitit_local ..."         how a sweep's members run ("" = one after another)
#   TIMED_EVAL="ratio"                                 studies whose runs get the throughput/speculative evaluation
#   PHASE=all | train | eval | collect                 train = steps 1-3, eval = steps 4-5; collect = tar the small
#                                                      result files (no weights) into $COLLECT_TO/results.tgz
#   SWEEP_ARGS=""                                      extra overrides for the sweeps only (e.g. fewer members)
#   EVAL_ARGS="suite.recall.multiples=[1,2,4] ..."     eval.py overrides for every evaluation
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG=${HD_LOG_DIR:-outputs}/smollm2
STUDIES=${STUDIES:-"ratio init loss mixer backend stepwise"}
LAUNCH=${LAUNCH-"hydra/launcher=submitit_local hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=60"}
TIMED_EVAL=${TIMED_EVAL-"ratio"}
EVAL_ARGS=${EVAL_ARGS-"suite.recall.multiples=[1,2,4] suite.recall.num_examples=16 suite.samples.num_prompts=6 \
suite.samples.max_new_tokens=64 suite.throughput.prompt_lens=[512,2048] suite.throughput.batches=[1,8] \
suite.throughput.new_tokens=32 suite.throughput.warmup=3"}
PY=${PYTHON:-python}
mkdir -p "$LOG"
# shellcheck source=experiments/lib/study.sh
source experiments/lib/study.sh

# the sweeps skip members that equal another study's run: the 50 % Mamba-2 attention-initialised KL + CE student
# is the ratio study's mamba_ratio=0.5 run (a command-line value of a swept key replaces the config's sweep)
declare -A ONLY=(
  [init]="student.init=random"
  [loss]="loss=kl,sft"
  [mixer]="student=mamba1"
)

PHASE=${PHASE:-all}
failed=0
if [ "$PHASE" = collect ]; then  # what a time-limited box sends back: configs, metrics, eval results, logs, W&B runs
  collect "$LOG" "${COLLECT_TO:-.}"
  exit 0
fi
if [ "$PHASE" != eval ]; then
stamp "seqkd"
$PY train.py experiment=smollm2/seqkd "$@" > "$LOG/seqkd.log" 2>&1
stamp "studies: $STUDIES"
for study in $STUDIES; do
  if [ "$study" = stepwise ]; then
    $PY train.py experiment=smollm2/stepwise "$@" > "$LOG/$study.log" 2>&1 &
  else
    # shellcheck disable=SC2086
    $PY train.py -m experiment=smollm2/$study ${ONLY[$study]:-} $LAUNCH ${SWEEP_ARGS:-} "$@" > "$LOG/$study.log" 2>&1 &
  fi
done
wait_all || failed=1
stamp "studies finished (failed=$failed)"

ratio05=$(ls -d "$LOG"/smollm2-ratio/*/ 2>/dev/null | while read -r d; do
  grep -qE "^ *- mamba_ratio=0.5$" "$d/.hydra/overrides.yaml" 2>/dev/null && echo "$d"; done | head -1)
if [ -n "$ratio05" ]; then
  stamp "dpo from $ratio05"
  $PY train.py experiment=smollm2/dpo "stage.init_from=${ratio05}student" "$@" > "$LOG/dpo.log" 2>&1 || failed=1
fi
fi
[ "$PHASE" = train ] && { stamp "done (failed=$failed)"; exit $failed; }

# every finished run (a student directory): quality, recall and samples in parallel
# shellcheck disable=SC2207
runs=($(finished_runs "$LOG"))
UNTIMED="suite.throughput.enabled=false suite.speculative.enabled=false suite.samples.source=shakespeare_instruct"
stamp "eval of ${#runs[@]} runs"
eval_parallel "$UNTIMED $EVAL_ARGS" "${runs[@]}" || failed=1
stamp "timed eval (one at a time): $TIMED_EVAL"
for study in $TIMED_EVAL; do
  timed=()
  for run in "$LOG"/smollm2-"$study"/*/; do [ -d "$run/student" ] && timed+=("$run"); done
  eval_one_by_one "suite.quality.enabled=false suite.recall.enabled=false suite.samples.enabled=false $EVAL_ARGS" \
    "${timed[@]}" || failed=1
done
# shellcheck disable=SC2046
report "$LOG" $(for study in $STUDIES; do echo "smollm2-$study"; done)
stamp "done (failed=$failed)"
exit $failed
