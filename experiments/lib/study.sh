# What the study runners (experiments/<study>/run_study.sh) share; sourced, not run. Expects PY (the python to use)
# and runs from the repository root.

stamp() { echo "[$(date +%T)] $*"; }

# wait_all: wait for every background job of this shell; 1 if any failed
wait_all() {
  local failed=0 job
  for job in $(jobs -p); do wait "$job" || failed=1; done
  return $failed
}

# finished_runs <log dir>: every run directory under it that saved a student (distilled, DPO or trained from scratch)
finished_runs() {
  find "$1" -name student -o -name dpo_student | grep -v wandb | xargs -r -n1 dirname | sort -u
}

# eval_parallel "<eval.py overrides>" <run dir>...: eval.py on every run at once (<run>/eval.log); 1 if any failed.
# For what shares a GPU well (quality, recall); timings go through eval_one_by_one.
eval_parallel() {
  local args=$1 run
  shift
  for run in "$@"; do
    # shellcheck disable=SC2086
    $PY eval.py "ckpt=$run" $args > "$run/eval.log" 2>&1 &
  done
  wait_all
}

# eval_one_by_one "<eval.py overrides>" <run dir>...: eval.py on one run at a time (<run>/eval_timed.log), so that
# throughput is measured with the GPU to itself; 1 if any failed
eval_one_by_one() {
  local args=$1 run failed=0
  shift
  for run in "$@"; do
    # shellcheck disable=SC2086
    $PY eval.py "ckpt=$run" $args > "$run/eval_timed.log" 2>&1 || failed=1
  done
  return $failed
}

# report <log dir> <study dir name>...: python -m hybrid_distill.report for each study that ran (<log>/report-<name>.log)
report() {
  local log=$1 name
  shift
  for name in "$@"; do
    [ -d "$log/$name" ] && $PY -m hybrid_distill.report "$log/$name" > "$log/report-$name.log" 2>&1
  done
  return 0
}

# collect <log dir> <destination dir>: the small result files (configs, metrics, eval results, logs, reports) as
# <destination>/results.tgz and the W&B offline runs as <destination>/wandb.tgz (no weights, datasets or code
# copies): what a time-limited box sends back, in files small enough for its transfer limit
collect() {
  local log=$1 dest=$2
  (cd "$log/.." && find "$(basename "$log")" \( -name '*.json' -o -name '*.csv' -o -name '*.yaml' -o -name '*.log' \
     -o -name '*.md' -o -name '*.png' \) -not -path '*/wandb/*' -type f -size -5M | grep -v seqkd_dataset \
     | tar czf "$dest/results.tgz" -T -)
  (cd "$log/.." && find "$(basename "$log")" -path '*/wandb/*' -type f -size -5M | grep -v '/files/code/' \
     | tar czf "$dest/wandb.tgz" -T -)
}
