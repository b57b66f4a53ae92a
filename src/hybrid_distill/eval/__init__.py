"""Evaluation of distilled hybrids: measures the models it is given (`stages/eval.py` loads them for
`python eval.py ckpt=<run dir | student dir | .ckpt>` and for a pipeline's eval step).

Modules, in the order data flows through them:
- `loading`: resolve `ckpt` to a student and its training run's config;
- `quality`: held-out perplexity and teacher agreement (top-1, KL) on the run's validation split;
- `tasks` + `recall`: synthetic recall suite (MQAR, Phonebook, copying, needle-in-a-haystack) at multiples of the
  training length, scored teacher-forced;
- `decoders`: incremental decoding with snapshot/rollback for the hybrid and HF teachers (used by the next two);
- `throughput`: prefill/decode tokens/s and memory, hybrid vs teacher;
- `speculative`: speculative decoding with a hybrid target (exact under greedy);
- `results`: non-overwriting atomic JSON and W&B logging; `suite`: every section above on one student;
- `report`: aggregate runs into a markdown table and plots (`python -m hybrid_distill.report <dir>`);
- `lm_eval_adapter` / `lm_eval_cli`: the hybrid as an lm-evaluation-harness model; `lm_eval_tasks/`: the package's own
  small lm-eval tasks (YAML + documents), which `lm_eval_cli` includes by itself.
"""
