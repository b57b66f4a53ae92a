"""lm-evaluation-harness tasks shipped with the package, one per request type the adapter serves (multiple_choice ->
loglikelihood, generate_until, loglikelihood_rolling), each on a few documents of this directory: a quick check that
a student runs through the harness (`hd-lm-eval` includes this directory by itself), not a benchmark.

    hd_recall_mc   key-value recall, multiple choice (acc)
    hd_copy_gen    copy a word list, generation until a newline (exact_match)
    hd_text_ppl    rolling log-likelihood of Shakespeare lines (word_perplexity, bits_per_byte)

The YAMLs read their documents through `hd_data.load` (lm-eval imports that file by its path beside the YAML), so
they work wherever the package is installed.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).parent
TASK_NAMES = tuple(sorted(p.stem for p in TASKS_DIR.glob("hd_*.yaml")))
