#!/usr/bin/env bash
# The from-scratch architecture study end to end on one GPU box (experiments/scratch/README.md):
#   1. corpus (CORPUS=1): the SmolLM2-135M teacher writes the extra text; every study then trains on it too;
#   2. the studies, one after another, each sweep's members at once on the one GPU (submitit_local: the 20M and 80M
#      models leave most of an H200 idle, so concurrent runs cost little each);
#   3. eval.py (eval@suite=scratch) on every run: quality and recall in parallel, then throughput one run at a time;
#   4. the report of each study (table with every run's parameter count, seed spread, plots).
# usage: bash experiments/scratch/run_study.sh [hydra overrides for every training run]
#   STUDIES="arch_small arch_large attention"   which studies to run
#   CORPUS=1                                     write and use the teacher's corpus (0: the plays only)
#   LAUNCH="hydra/launcher=submitit_local ..."   how a sweep's members run ("" = one after another)
#   PHASE=all | corpus | train | eval | collect  corpus = step 1 only, train = steps 1-2, eval = steps 3-4,
#                                                collect = tar the small result files into $COLLECT_TO/results.tgz
#   EVAL_ARGS="suite.recall.num_examples=32"     eval.py overrides for every evaluation
#   CORPUS_ARGS="stage.max_documents=2000"       overrides for the corpus run
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG=${HD_LOG_DIR:-outputs}/scratch
STUDIES=${STUDIES:-"arch_small arch_large attention"}
CORPUS=${CORPUS:-1}
LAUNCH=${LAUNCH-"hydra/launcher=submitit_local hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=120"}
EVAL_ARGS=${EVAL_ARGS-""}
CORPUS_ARGS=${CORPUS_ARGS-""}
PY=${PYTHON:-python}
PHASE=${PHASE:-all}
mkdir -p "$LOG"
# shellcheck source=experiments/lib/study.sh
source experiments/lib/study.sh
failed=0

if [ "$PHASE" = collect ]; then
  collect "$LOG" "${COLLECT_TO:-.}"
  exit 0
fi
corpus_args=()
if [ "$CORPUS" = 1 ]; then
  corpus_args=("scratch.corpus=$(realpath "$LOG")/corpus/corpus.jsonl")
fi
if [ "$PHASE" = all ] || [ "$PHASE" = corpus ] || [ "$PHASE" = train ]; then
  if [ "$CORPUS" = 1 ] && [ ! -f "$LOG/corpus/metrics.json" ]; then
    stamp "corpus"
    resume=()  # an interrupted corpus run continues after the documents it wrote
    [ -f "$LOG/corpus/.hydra/config.yaml" ] && resume=("resume=$LOG/corpus")
    # shellcheck disable=SC2086
    $PY train.py experiment=scratch/corpus "${resume[@]}" $CORPUS_ARGS > "$LOG/corpus.log" 2>&1 \
      || { stamp "corpus failed: $LOG/corpus.log"; exit 1; }
  fi
  [ "$PHASE" = corpus ] && { stamp "done"; exit 0; }
  for study in $STUDIES; do
    stamp "study $study"
    # shellcheck disable=SC2086
    $PY train.py -m experiment=scratch/$study "${corpus_args[@]}" $LAUNCH "$@" > "$LOG/$study.log" 2>&1 || failed=1
  done
  stamp "studies finished (failed=$failed)"
fi
[ "$PHASE" = train ] && { stamp "done (failed=$failed)"; exit $failed; }

# shellcheck disable=SC2207
runs=($(finished_runs "$LOG"))
stamp "eval of ${#runs[@]} runs"
# shellcheck disable=SC2086
eval_parallel "eval@suite=scratch suite.throughput.enabled=false $EVAL_ARGS" "${runs[@]}" || failed=1
stamp "timed eval (one at a time)"
eval_one_by_one "eval@suite=scratch suite.quality.enabled=false suite.recall.enabled=false \
suite.recall_items.enabled=false $EVAL_ARGS" "${runs[@]}" || failed=1
# shellcheck disable=SC2046
report "$LOG" $(for study in $STUDIES; do echo "scratch-$study"; done)
stamp "done (failed=$failed)"
exit $failed
