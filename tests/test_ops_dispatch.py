"""scan_backend routing: names, `auto`, and the errors for unavailable backends."""

from __future__ import annotations

import pytest
import torch

from hybrid_distill.ops import KNOWN_BACKENDS, available_backends, resolve_backend, ssd_scan


def test_every_known_backend_is_registered():
    from hybrid_distill.ops import BACKENDS

    assert set(KNOWN_BACKENDS) == set(BACKENDS) | {"auto"}


def test_cpu_always_has_the_torch_backends():
    assert {"torch_ref", "torch_chunked"} <= set(available_backends())


def test_auto_on_cpu_picks_the_chunked_form():
    assert resolve_backend("auto", torch.device("cpu")).name == "torch_chunked"


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="torch_chunked"):
        resolve_backend("cuda_magic")


@pytest.mark.skipif(torch.cuda.is_available(), reason="mamba_ssm may be available on a GPU machine")
def test_unavailable_mamba_ssm_says_what_to_install():
    with pytest.raises(RuntimeError, match="pip install mamba-ssm"):
        resolve_backend("mamba_ssm", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="triton runs natively on a GPU machine")
def test_triton_on_cpu_without_interpreter_is_refused_clearly(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.zeros(1, 4, 2, 16)
    with pytest.raises(RuntimeError, match="triton"):
        ssd_scan(
            x,
            torch.zeros(1, 4, 2),
            -torch.ones(2),
            torch.zeros(1, 4, 1, 16),
            torch.zeros(1, 4, 1, 16),
            backend="triton",
        )


def test_auto_on_gpu_prefers_own_triton_for_ssd_and_mamba_ssm_for_mamba1(monkeypatch):
    from dataclasses import replace

    from hybrid_distill.ops import BACKENDS

    # pretend every backend is installed: the choice is then the per-operator order alone
    for name, backend in list(BACKENDS.items()):
        monkeypatch.setitem(BACKENDS, name, replace(backend, is_available=lambda: True))
    cuda = torch.device("cuda")
    assert resolve_backend("auto", cuda, op="ssd").name == "triton"
    assert resolve_backend("auto", cuda, op="selective").name == "mamba_ssm"
    monkeypatch.setitem(BACKENDS, "triton", replace(BACKENDS["triton"], is_available=lambda: False))
    assert resolve_backend("auto", cuda, op="ssd").name == "mamba_ssm"
