"""Which layers keep attention: the layer-pattern string ("A" = attention, "M" = Mamba), one letter per layer.

Rule for a `mamba_ratio` r on L layers:
    n_mamba = floor(r * L + 0.5)            (round half up, so 0.5 * 3 layers -> 2 Mamba layers)
    n_attn  = L - n_mamba
    attention at layers  ((k + 1) * L) // n_attn - 1   for k = 0 .. n_attn - 1
i.e. the kept attention layers sit at the end of n_attn equal slices of depth, so the last layer is always
attention while any attention is left. For 32 layers this gives exactly the MambaInLlama placements:
    0.5   -> attention at 1, 3, 5, ..., 31
    0.75  -> attention at 3, 7, 11, ..., 31
    0.875 -> attention at 7, 15, 23, 31
Stepwise replacement needs each pattern to keep attention only where the previous one had it. On 32 layers the
rule's placements nest (31 ⊂ 7,15,23,31 ⊂ 3,7,...,31 ⊂ 1,3,...,31); on other depths they may not (30 layers:
0.75 puts attention at 16, 20, 24, which are Mamba at 0.5), so `nested_pattern` moves each of the rule's
attention layers to the nearest attention layer of the previous pattern.
"""

from __future__ import annotations

import math

ATTENTION, MAMBA = "A", "M"


def layer_pattern(num_layers: int, mamba_ratio: float) -> str:
    """The pattern string for `mamba_ratio` in [0, 1] of `num_layers` layers (see the module docstring)."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if (
        isinstance(mamba_ratio, bool)
        or not isinstance(mamba_ratio, (int, float))
        or math.isnan(mamba_ratio)
        or not 0.0 <= mamba_ratio <= 1.0
    ):
        raise ValueError(f"mamba_ratio must be a number in [0, 1], got {mamba_ratio!r}")
    n_attn = num_layers - math.floor(mamba_ratio * num_layers + 0.5)
    attn_layers = {((k + 1) * num_layers) // n_attn - 1 for k in range(n_attn)}
    return "".join(ATTENTION if i in attn_layers else MAMBA for i in range(num_layers))


def validate_pattern(pattern: str, num_layers: int | None = None) -> str:
    """Return `pattern` if it is a string of A/M (of length `num_layers` when given), else raise ValueError."""
    if not isinstance(pattern, str) or not pattern or set(pattern) - {ATTENTION, MAMBA}:
        raise ValueError(f"pattern must be a non-empty string of 'A' (attention) and 'M' (Mamba), got {pattern!r}")
    if num_layers is not None and len(pattern) != num_layers:
        raise ValueError(f"pattern {pattern!r} has {len(pattern)} letters but the model has {num_layers} layers")
    return pattern


def resolve_pattern(num_layers: int, mamba_ratio: float | None = None, pattern: str | None = None) -> str:
    """Exactly one of `mamba_ratio` / `pattern` picks the layer pattern."""
    if (mamba_ratio is None) == (pattern is None):
        raise ValueError(
            f"give exactly one of mamba_ratio or pattern (got mamba_ratio={mamba_ratio!r}, pattern={pattern!r})"
        )
    if pattern is not None:
        return validate_pattern(pattern, num_layers)
    return layer_pattern(num_layers, mamba_ratio)


def nested_pattern(previous: str, mamba_ratio: float) -> str:
    """The rule's pattern for `mamba_ratio`, with its attention layers moved to the nearest still-free attention
    layers of `previous` (ties: the later layer), so that no Mamba layer of `previous` becomes attention again.
    Equals `layer_pattern` whenever that already nests in `previous`."""
    target = layer_pattern(len(previous), mamba_ratio)
    free = [i for i, kind in enumerate(previous) if kind == ATTENTION]
    wanted = [i for i, kind in enumerate(target) if kind == ATTENTION]
    if len(wanted) > len(free):
        raise ValueError(
            f"mamba_ratio={mamba_ratio} keeps {len(wanted)} attention layers but the previous pattern "
            f"{previous!r} has only {len(free)}"
        )
    kept = set()
    for layer in reversed(wanted):  # from the top, so the last layer keeps attention as in the rule
        nearest = min((i for i in free if i not in kept), key=lambda i: (abs(i - layer), -i))
        kept.add(nearest)
    return "".join(ATTENTION if i in kept else MAMBA for i in range(len(previous)))
