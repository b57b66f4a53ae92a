import re

import pytest

from hybrid_distill.models import layer_pattern, resolve_pattern


def _attention_layers(pattern: str) -> list[int]:
    return [i for i, c in enumerate(pattern) if c == "A"]


def test_paper_placements_on_32_layers():
    assert _attention_layers(layer_pattern(32, 0.5)) == list(range(1, 32, 2))
    assert _attention_layers(layer_pattern(32, 0.75)) == list(range(3, 32, 4))
    assert _attention_layers(layer_pattern(32, 0.875)) == [7, 15, 23, 31]


def test_extremes_and_counts():
    assert layer_pattern(6, 0.0) == "AAAAAA"
    assert layer_pattern(6, 1.0) == "MMMMMM"
    for n in (1, 5, 7, 28, 56):
        for r in (0.1, 0.25, 0.5, 0.6, 0.75, 0.9):
            p = layer_pattern(n, r)
            assert len(p) == n and p.count("M") == int(r * n + 0.5)
            if "A" in p:
                assert p[-1] == "A"  # the last layer keeps attention while any is left


def test_stepwise_ratios_are_nested():
    # 50 -> 75 -> 87.5 %: every attention layer of a later stage was attention before (convert never needs M -> A)
    p50, p75, p875 = (layer_pattern(32, r) for r in (0.5, 0.75, 0.875))
    assert set(_attention_layers(p875)) <= set(_attention_layers(p75)) <= set(_attention_layers(p50))


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_ratio_names_the_value(ratio):
    with pytest.raises(ValueError, match=r"mamba_ratio must be a number in \[0, 1\], got " + re.escape(repr(ratio))):
        layer_pattern(8, ratio)


def test_neither_ratio_nor_pattern_is_an_error():
    with pytest.raises(ValueError, match="give exactly one of mamba_ratio or pattern"):
        resolve_pattern(8)


@pytest.mark.parametrize("pattern", ["AMAM", "AMXMAMAM", "amamamam", ""])
def test_bad_pattern_names_the_value(pattern):
    with pytest.raises(ValueError, match="pattern"):
        resolve_pattern(8, pattern=pattern)


def test_pattern_of_wrong_length_names_both_lengths():
    with pytest.raises(ValueError, match=r"'AMAM' has 4 letters but the model has 8 layers"):
        resolve_pattern(8, pattern="AMAM")


def test_ratio_and_pattern_are_exclusive():
    with pytest.raises(ValueError, match="exactly one"):
        resolve_pattern(4, mamba_ratio=0.5, pattern="MAMA")
    assert resolve_pattern(4, pattern="MMAA") == "MMAA"
