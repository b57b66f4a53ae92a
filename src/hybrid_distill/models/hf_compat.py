"""What differs between the supported transformers releases, detected once from the installed one.

transformers 5.25 renamed the cache argument and output field of its models and `generate` from `past_key_values` to
`cache`; 5.24 (the lock's) and earlier know only `past_key_values`. The hybrid keeps `cache` as its own argument
name and speaks the installed release's name wherever transformers reads or passes it (its output, what `generate`
hands `prepare_inputs_for_generation`, the HF teacher's forward).
"""

from __future__ import annotations

import dataclasses

from transformers.modeling_outputs import CausalLMOutputWithPast

# the name transformers' causal-LM outputs, forwards and generate use for the cache
CACHE_ARG = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
