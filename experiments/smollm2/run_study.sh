#!/usr/bin/env bash
# The SmolLM2-135M study on one GPU (experiments/smollm2/README.md), in phases that fit the device tool's calls:
#   PHASE=seqkd     the teacher answers the training and held-out prompts (experiment=smollm2/seqkd)
#   PHASE=train     every study's runs, PARALLEL at a time on the one GPU, longest first; a finished run is skipped
#                   and an interrupted one resumed, so the phase can be run again after a cut
#   PHASE=eval      DPO from the 50 % KL + CE run; eval.py on every run (quality, recall, samples), PARALLEL at a time;
#                   then decoding tokens/s of the ratio runs on the static engine, one process, the GPU to itself
#   PHASE=report    python -m hybrid_distill.report for each study
#   PHASE=collect   the small result files (no weights) as $COLLECT_TO/results.tgz
# usage: PHASE=train bash experiments/smollm2/run_study.sh [hydra overrides for every run, e.g. model.path=/tmp/stage]
#   STEPS=120 BATCH=32     one run's budget: STEPS x BATCH rows of 512 tokens (every run of a study the same; a
#                          stepwise step gets STEPS / 3, so take a multiple of 3)
#   PARALLEL=4             training or evaluation processes at once
#   DEADLINE=<epoch s>     no new job starts after this time; running ones go on
#   STOP_AT=<epoch s>      runs still training then save a checkpoint and stop (SIGTERM); PHASE=train resumes them
#   EVAL_RECALL="..."      eval.py recall overrides where the teacher is above chance (recall_calibration.md)
#   EVAL_ARGS="..."        more eval.py overrides for every evaluation
#   DECODE_ARGS="..."      decode_speed.py's options (prompt lengths, batches, new tokens, repeats)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LOG=${HD_LOG_DIR:-outputs}/smollm2 PY=${PYTHON:-python} STEPS=${STEPS:-120} BATCH=${BATCH:-32}
export DEADLINE=${DEADLINE:-0} COMMON="$*"
PARALLEL=${PARALLEL:-4}
# where the teacher itself is clearly above chance (experiments/smollm2/recall_calibration.md): plain-text phone book
# and needle from 64 to 1,024 tokens, copying 2-8 words; at 512+ tokens in the chat format it scored 0.00-0.004
EVAL_RECALL=${EVAL_RECALL:-"suite.recall.tasks=[phonebook,needle] suite.recall.text_format=plain \
suite.recall.multiples=[0.125,0.25,0.5,1,2] suite.recall.num_examples=64 suite.recall_items.enabled=true \
suite.recall_items.tasks=[copy] suite.recall_items.counts=[2,4,8] suite.recall_items.text_format=plain \
suite.recall_items.num_examples=64"}
mkdir -p "$LOG"
# shellcheck source=experiments/lib/study.sh
source experiments/lib/study.sh

# one job per line: <study> <run name> <overrides>, in the order they start (what the rest builds on first). Seed 0 is
# the config's; the second seed (1) repeats the two headline comparisons (stepwise vs direct 0.875, attention vs
# random init). Seed 0's 50 % Mamba-2 attention-initialised KL + CE run is the ratio study's r0.5 (also the init and
# mixer studies' baseline and DPO's start), its direct 0.875 run the ratio study's r0.875.
jobs() {
  echo "ratio r0.5 mamba_ratio=0.5"
  echo "stepwise stepwise_s0 experiment=smollm2/stepwise seed=0"
  for r in 0.875 0.25 0.75 1.0; do echo "ratio r$r mamba_ratio=$r"; done
  echo "init random_s0 mamba_ratio=0.5 student.init=random"
  # Mamba-1's selective scan has no own GPU kernel (torch_chunked; mamba-ssm is not on the image): at 32 rows it ran
  # out of memory before, so it takes BATCH/8 rows at a time and accumulates 8 (the same tokens per optimizer step;
  # validation every 320 batches = 40 steps, on the same 320 held-out rows as the others)
  echo "mixer mamba1_s0 mamba_ratio=0.5 student=mamba1 model.recipe.distill.batch_size=$((BATCH / 8)) \
    +trainer.accumulate_grad_batches=8 stage.val_every=320 trainer.limit_val_batches=80"
  echo "ratio r0 mamba_ratio=0"
  echo "stepwise stepwise_s1 experiment=smollm2/stepwise seed=1"
  echo "stepwise direct_s1 mamba_ratio=0.875 seed=1"
  echo "init random_s1 mamba_ratio=0.5 student.init=random seed=1"
  echo "init attention_s1 mamba_ratio=0.5 seed=1"
}

# run_job <study> <name> <overrides...>: one training run in $LOG/smollm2-<study>/<name> (<name>.log beside it)
run_job() {
  local study=$1 name=$2
  shift 2
  local dir=$LOG/smollm2-$study/$name
  mkdir -p "$LOG/smollm2-$study"
  [ -f "$dir/metrics.json" ] && return 0  # finished in an earlier call (a pipeline writes it after its last step)
  if [ "$DEADLINE" != 0 ] && [ "$(date +%s)" -ge "$DEADLINE" ]; then
    stamp "skip $study/$name: past the deadline"
    return 0
  fi
  local where=("hydra.run.dir=$dir")
  [ -d "$dir/.hydra" ] && where=("resume=$dir")
  local base=experiment=smollm2/distill
  [[ " $* " == *" experiment="* ]] && base=""
  stamp "start $study/$name"
  # shellcheck disable=SC2086
  if $PY train.py $base experiment_name=smollm2-$study "smollm2.steps=$STEPS" "smollm2.stepwise_steps=$((STEPS / 3))" \
    "model.recipe.distill.batch_size=$BATCH" "$@" "${where[@]}" $COMMON > "$LOG/smollm2-$study/$name.log" 2>&1; then
    stamp "done $study/$name"
  else
    stamp "FAILED $study/$name (exit $?): $LOG/smollm2-$study/$name.log"
    return 1
  fi
}
export -f run_job stamp

PHASE=${PHASE:-train}
case $PHASE in
  seqkd)
    stamp "seqkd"
    # shellcheck disable=SC2086
    $PY train.py experiment=smollm2/seqkd "$@" > "$LOG/seqkd.log" 2>&1
    stamp "seqkd done" ;;
  train)
    stamp "train: $PARALLEL at a time, $STEPS steps x $BATCH x 512 tokens per run"
    jobs | xargs -P "$PARALLEL" -L 1 bash -c 'run_job "$@"' _ &
    queue=$!
    # STOP_AT (epoch s): runs still training then get SIGTERM, save last.ckpt and exit 75; PHASE=train resumes them
    while [ -n "${STOP_AT:-}" ] && kill -0 "$queue" 2>/dev/null && [ "$(date +%s)" -lt "$STOP_AT" ]; do sleep 5; done
    if kill -0 "$queue" 2>/dev/null && [ -n "${STOP_AT:-}" ]; then
      stamp "STOP_AT reached: runs still training save a checkpoint and stop"
      pkill -TERM -f "train.py .*experiment_name=smollm2-" || true
    fi
    wait "$queue" || { stamp "some runs failed or were stopped"; exit 1; } ;;
  eval)
    ratio05=$LOG/smollm2-ratio/r0.5
    stamp "dpo from $ratio05 (beside the evaluations)"
    $PY train.py experiment=smollm2/dpo "stage.init_from=$ratio05/student" "hydra.run.dir=$LOG/smollm2-dpo/dpo_s0" \
      "$@" > "$LOG/dpo.log" 2>&1 &
    dpo=$!
    # eval.py finds each run's teacher and data in the run's own config (model.path as trained)
    evaluate="$PY eval.py $EVAL_RECALL suite.throughput.enabled=false suite.speculative.enabled=false \
      suite.samples.source=shakespeare_instruct suite.samples.num_prompts=6 suite.samples.max_new_tokens=64 ${EVAL_ARGS:-}"
    # shellcheck disable=SC2207
    runs=($(finished_runs "$LOG"))
    stamp "eval of ${#runs[@]} runs, $PARALLEL at a time"
    printf '%s\n' "${runs[@]}" | xargs -P "$PARALLEL" -I{} bash -c "$evaluate ckpt={} > {}/eval.log 2>&1 || echo 'eval failed: {}'"
    if wait "$dpo"; then
      $evaluate "ckpt=$LOG/smollm2-dpo/dpo_s0" > "$LOG/smollm2-dpo/eval.log" 2>&1 || echo "eval failed: dpo"
    else
      echo "dpo failed: $LOG/dpo.log"
    fi
    stamp "decoding tokens/s of the ratio runs (static engine)"
    # shellcheck disable=SC2086
    $PY experiments/smollm2/decode_speed.py "$LOG/smollm2-ratio" ${DECODE_ARGS:-} > "$LOG/decode_speed.log" 2>&1 \
      || echo "decode_speed failed: $LOG/decode_speed.log"
    stamp "eval done" ;;
  report)
    report "$LOG" smollm2-ratio smollm2-stepwise smollm2-init smollm2-mixer smollm2-dpo || true
    # DPO's start measured on what DPO's evaluation measures (the held-out answers its pairs come from), after the
    # reports, so that the ratio study's row keeps its quality on its own held-out data: <r0.5>/eval-2.json
    $PY eval.py "ckpt=$LOG/smollm2-ratio/r0.5" "suite.quality.source=$LOG/seqkd/seqkd_dataset" \
      suite.recall.enabled=false suite.recall_items.enabled=false suite.samples.enabled=false \
      suite.throughput.enabled=false suite.speculative.enabled=false ${EVAL_ARGS:-} > "$LOG/dpo_reference_eval.log" 2>&1 \
      || echo "eval of DPO's reference on its answers failed: $LOG/dpo_reference_eval.log" ;;
  collect)
    collect "$LOG" "${COLLECT_TO:-.}" ;;
  *) echo "PHASE=$PHASE: one of seqkd, train, eval, report, collect" >&2; exit 2 ;;
esac
