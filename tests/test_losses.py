"""Tests of hybrid_distill.losses: properties (hypothesis) plus checks against independent references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_distill import losses as L

DIVERGENCE_NAMES = tuple(L.DIVERGENCES)  # kl, rkl, jsd, kl_chunked
PROPERTY = settings(
    max_examples=40, deadline=None, database=None, derandomize=True
)  # no .hypothesis dir; CI reproducible


# ---------------------------------------------------------------- inputs and references


def make_logits(b=2, t=5, v=11, scale=3.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(b, t, v, generator=g) * scale).to(dtype)  # (B, T, V)
    teacher = (torch.randn(b, t, v, generator=g) * scale).to(dtype)  # (B, T, V)
    mask = torch.rand(b, t, generator=g) < 0.6  # (B, T)
    mask[0, 0] = True  # at least one counted position
    return student, teacher, mask


@st.composite
def logit_batches(draw, max_vocab=40):
    """(student (B, T, V), teacher (B, T, V), mask (B, T)) with varied shapes, scales and mask densities."""
    b, t, v = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, max_vocab))
    scale = draw(st.sampled_from([0.01, 1.0, 8.0, 40.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    student, teacher = torch.randn(b, t, v, generator=g) * scale, torch.randn(b, t, v, generator=g) * scale
    mask = torch.rand(b, t, generator=g) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    return student, teacher, mask


def ref_token_kl(p_logits, q_logits, temperature=1.0):
    """KL(p || q) per position via F.kl_div: (..., V) -> (...)."""
    log_p, log_q = (F.log_softmax(x.double() / temperature, -1) for x in (p_logits, q_logits))
    return F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)


def ref_masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def ref_trl_jsd(student, teacher, beta):
    """TRL's generalized_jsd_loss body (unreduced), 0 < beta < 1: (..., V) -> (...)."""
    log_s, log_t = F.log_softmax(student.double(), -1), F.log_softmax(teacher.double(), -1)
    b = torch.tensor(beta, dtype=torch.float64)
    log_m = torch.logsumexp(torch.stack([log_s + torch.log(1 - b), log_t + torch.log(b)]), dim=0)
    kl_t = F.kl_div(log_m, log_t, reduction="none", log_target=True).sum(-1)
    kl_s = F.kl_div(log_m, log_s, reduction="none", log_target=True).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


def loss_and_grads(name, student, teacher, mask, **options):
    """Value of the named divergence and its gradients w.r.t. both logits."""
    s, t = student.detach().clone().requires_grad_(), teacher.detach().clone().requires_grad_()
    loss = L.divergence(name, s, t, mask, **options)
    loss.backward()
    return loss.detach(), s.grad, t.grad


# ---------------------------------------------------------------- divergence properties


@PROPERTY
@given(batch=logit_batches(), name=st.sampled_from(DIVERGENCE_NAMES))
def test_divergences_are_nonnegative_and_zero_for_equal_distributions(batch, name):
    student, teacher, mask = batch
    assert L.divergence(name, student, teacher, mask) >= -1e-6
    assert L.divergence(name, student, student, mask).abs() < 1e-5
    assert L.divergence(name, student, student + 7.0, mask).abs() < 1e-5  # same softmax


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_divergences_are_positive_when_distributions_differ(name):
    student, _, mask = make_logits()
    teacher = student.clone()
    teacher[0, 0, 3] += 2.0  # one counted position differs
    assert L.divergence(name, student, teacher, mask) > 1e-4


@PROPERTY
@given(batch=logit_batches())
def test_jsd_is_symmetric_at_half(batch):
    student, teacher, mask = batch
    torch.testing.assert_close(
        L.generalized_jsd(student, teacher, mask, beta=0.5),
        L.generalized_jsd(teacher, student, mask, beta=0.5),
        atol=1e-6,
        rtol=1e-5,
    )


def test_jsd_at_half_is_bounded_by_log2_and_reaches_it_for_disjoint_supports():
    student = torch.tensor([[[30.0, -30.0]]])  # (1, 1, 2): all mass on token 0
    teacher = torch.tensor([[[-30.0, 30.0]]])  # all mass on token 1
    torch.testing.assert_close(L.generalized_jsd(student, teacher, beta=0.5), torch.tensor(math.log(2)))
    student, teacher, mask = make_logits(scale=10.0)
    assert L.generalized_jsd(student, teacher, mask, beta=0.5) < math.log(2)


def test_jsd_endpoints_are_forward_and_reverse_kl_and_limits_agree():
    student, teacher, mask = make_logits(scale=1.0)
    fkl, rkl = L.forward_kl(student, teacher, mask), L.reverse_kl(student, teacher, mask)
    torch.testing.assert_close(L.generalized_jsd(student, teacher, mask, beta=0.0), fkl)
    torch.testing.assert_close(L.generalized_jsd(student, teacher, mask, beta=1.0), rkl)
    eps = 1e-4  # the interior formula / beta tends to forward KL, / (1 - beta) to reverse KL
    torch.testing.assert_close(L.generalized_jsd(student, teacher, mask, beta=eps) / eps, fkl, rtol=2e-3, atol=0)
    torch.testing.assert_close(L.generalized_jsd(student, teacher, mask, beta=1 - eps) / eps, rkl, rtol=2e-3, atol=0)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_jsd_rejects_beta_outside_unit_interval(beta):
    student, teacher, mask = make_logits()
    with pytest.raises(ValueError, match="beta"):
        L.generalized_jsd(student, teacher, mask, beta=beta)


def test_divergences_match_independent_references_per_token():
    student, teacher, mask = make_logits()
    expected_fkl = ref_masked_mean(ref_token_kl(teacher, student, 2.0), mask)
    torch.testing.assert_close(L.forward_kl(student, teacher, mask, temperature=2.0).double(), expected_fkl)
    expected_rkl = ref_masked_mean(ref_token_kl(student, teacher), mask)
    torch.testing.assert_close(L.reverse_kl(student, teacher, mask).double(), expected_rkl)
    expected_jsd = ref_masked_mean(ref_trl_jsd(student, teacher, 0.3), mask)
    torch.testing.assert_close(L.generalized_jsd(student, teacher, mask, beta=0.3).double(), expected_jsd)


def test_normalisation_is_per_token_not_per_sequence():
    student, teacher, _ = make_logits(b=2, t=4)
    mask = torch.tensor([[False, True, False, False], [True, True, True, False]])  # 1 + 3 tokens
    per_token = ref_token_kl(teacher, student)[mask]  # (4,)
    loss = L.forward_kl(student, teacher, mask)
    torch.testing.assert_close(loss.double(), per_token.mean())
    assert not torch.isclose(loss.double(), per_token.sum() / 2)  # not batchmean


@PROPERTY
@given(
    batch=logit_batches(),
    name=st.sampled_from(DIVERGENCE_NAMES),
    garbage=st.sampled_from([1e4, -1e4, float("nan"), float("inf")]),
)
def test_mask_excludes_positions(batch, name, garbage):
    student, teacher, mask = batch
    loss, grad_s, grad_t = loss_and_grads(name, student, teacher, mask)
    student2, teacher2 = student.clone(), teacher.clone()
    student2[~mask], teacher2[~mask] = garbage, -garbage  # only masked-out rows change
    loss2, grad_s2, grad_t2 = loss_and_grads(name, student2, teacher2, mask)
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(grad_s2, grad_s)
    torch.testing.assert_close(grad_t2, grad_t)
    assert (grad_s2[~mask] == 0).all() and (grad_t2[~mask] == 0).all()


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_fully_masked_batch_gives_zero_loss_and_zero_finite_gradients(name):
    student, teacher, _ = make_logits()
    loss, grad_s, grad_t = loss_and_grads(name, student, teacher, torch.zeros(2, 5, dtype=torch.bool))
    assert loss == 0
    assert (grad_s == 0).all() and (grad_t == 0).all()


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_extreme_logits_give_finite_loss_and_gradients(name, temperature):
    student, teacher, mask = make_logits(scale=1.0)
    student[0, 0, :4] = torch.tensor([1e4, -1e4, -1e4, 0.0])  # near one-hot, disagreeing with the teacher
    teacher[0, 0, :4] = torch.tensor([-1e4, 1e4, -1e4, 0.0])
    student[1, :, 5] = -1e4
    loss, grad_s, grad_t = loss_and_grads(name, student, teacher, mask, temperature=temperature)
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(grad_s).all() and torch.isfinite(grad_t).all()


def test_temperature_scales_both_logits_and_t2_option_rescales():
    student, teacher, mask = make_logits()
    plain = L.forward_kl(student, teacher, mask)
    torch.testing.assert_close(L.forward_kl(student, teacher, mask, temperature=1.0), plain)
    hot = L.forward_kl(student, teacher, mask, temperature=2.0)
    torch.testing.assert_close(hot, L.forward_kl(student / 2, teacher / 2, mask))
    assert not torch.isclose(hot, plain)
    torch.testing.assert_close(L.forward_kl(student, teacher, mask, temperature=2.0, t2_scaling=True), 4 * hot)
    torch.testing.assert_close(L.forward_kl(student, teacher, mask, t2_scaling=True), plain)  # T = 1: no-op


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_nonpositive_temperature_is_rejected(name, temperature):
    student, teacher, mask = make_logits()
    with pytest.raises(ValueError, match="temperature"):
        L.divergence(name, student, teacher, mask, temperature=temperature)


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_shape_mismatches_name_the_shapes(name):
    student, teacher, mask = make_logits()
    with pytest.raises(ValueError, match=r"\(2, 5, 11\).*\(2, 5, 10\)"):
        L.divergence(name, student, teacher[..., :10], mask)
    with pytest.raises(ValueError, match=r"mask \(2, 4\).*\(2, 5\)"):
        L.divergence(name, student, teacher, mask[:, :4])


# ---------------------------------------------------------------- vocabulary-chunked KL


@PROPERTY
@given(batch=logit_batches(), chunk=st.integers(1, 45), temperature=st.sampled_from([1.0, 0.7, 3.0]))
def test_chunked_kl_matches_full_values_and_gradients(batch, chunk, temperature):
    student, teacher, mask = batch
    full = loss_and_grads("kl", student, teacher, mask, temperature=temperature)
    chunked = loss_and_grads("kl_chunked", student, teacher, mask, temperature=temperature, vocab_chunk=chunk)
    # both sums run in float32: their rounding grows with the log-probabilities, up to ~2 max|logit| / T in size
    # (a search of 1,500 examples found 1.1e-5 at logits of scale 40, T 0.7)
    atol = 1e-5 + 2.4e-7 * float(torch.cat([student, teacher]).abs().max()) / temperature
    for got, want in zip(chunked, full):
        torch.testing.assert_close(got, want, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 64, 100, 1000])  # 7 and 64 do not divide V = 100
def test_chunked_kl_matches_full_at_fixed_chunk_sizes(chunk):
    student, teacher, mask = make_logits(b=3, t=8, v=100, scale=5.0, seed=3)
    full = loss_and_grads("kl", student, teacher, mask, temperature=1.5, t2_scaling=True)
    chunked = loss_and_grads("kl_chunked", student, teacher, mask, temperature=1.5, t2_scaling=True, vocab_chunk=chunk)
    for got, want in zip(chunked, full):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_chunked_kl_passes_gradcheck_in_float64():
    student, teacher, mask = make_logits(b=2, t=3, v=9, dtype=torch.float64)
    inputs = (student.requires_grad_(), teacher.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda s, t: L.chunked_forward_kl(s, t, mask, temperature=1.3, chunk_size=4), inputs
    )


def test_chunked_kl_on_bf16_computes_in_float32_and_returns_bf16_gradients():
    student, teacher, mask = make_logits(b=2, t=6, v=50, dtype=torch.bfloat16)
    full = loss_and_grads("kl", student, teacher, mask)
    chunked = loss_and_grads("kl_chunked", student, teacher, mask, vocab_chunk=16)
    assert chunked[0].dtype == torch.float32 and chunked[1].dtype == torch.bfloat16
    torch.testing.assert_close(chunked[0], full[0], atol=1e-5, rtol=1e-5)  # same bf16 inputs, float32 math
    torch.testing.assert_close(chunked[1], full[1])  # gradients agree to bf16 rounding
    exact = L.forward_kl(student.float(), teacher.float(), mask)
    torch.testing.assert_close(chunked[0], exact, atol=1e-5, rtol=1e-5)


def test_chunked_kl_accepts_shifted_noncontiguous_views():
    student, teacher, mask = make_logits(b=2, t=6, v=30)
    s, t = student[:, :-1], teacher[:, :-1]  # views as produced by shift_for_next_token
    assert not s.is_contiguous()
    torch.testing.assert_close(L.chunked_forward_kl(s, t, mask[:, 1:], chunk_size=8), L.forward_kl(s, t, mask[:, 1:]))


def test_chunked_kl_leaves_a_frozen_teacher_without_gradient():
    student, teacher, mask = make_logits()
    student.requires_grad_()
    L.chunked_forward_kl(student, teacher, mask, chunk_size=4).backward()
    assert student.grad is not None and teacher.grad is None


def test_chunked_kl_rejects_bad_chunk_size():
    student, teacher, mask = make_logits()
    with pytest.raises(ValueError, match="chunk_size"):
        L.chunked_forward_kl(student, teacher, mask, chunk_size=0)


# ---------------------------------------------------------------- dispatcher


def test_divergence_dispatches_by_config_name():
    student, teacher, mask = make_logits()
    torch.testing.assert_close(L.divergence("kl", student, teacher, mask), L.forward_kl(student, teacher, mask))
    torch.testing.assert_close(L.divergence("rkl", student, teacher, mask), L.reverse_kl(student, teacher, mask))
    torch.testing.assert_close(
        L.divergence("jsd", student, teacher, mask, jsd_beta=0.2), L.generalized_jsd(student, teacher, mask, beta=0.2)
    )
    torch.testing.assert_close(
        L.divergence("kl_chunked", student, teacher, mask), L.forward_kl(student, teacher, mask), atol=1e-6, rtol=1e-6
    )
    torch.testing.assert_close(
        L.divergence("kl", student, teacher, mask, vocab_chunk=4, temperature=2.0),
        L.forward_kl(student, teacher, mask, temperature=2.0),
        atol=1e-6,
        rtol=1e-6,
    )


def test_divergence_rejects_unknown_names_and_vocab_chunk_without_chunked_form():
    student, teacher, mask = make_logits()
    with pytest.raises(ValueError, match="unknown divergence 'kld'.*'kl'.*'rkl'.*'jsd'.*'kl_chunked'"):
        L.divergence("kld", student, teacher, mask)
    with pytest.raises(ValueError, match="vocab_chunk"):
        L.divergence("rkl", student, teacher, mask, vocab_chunk=4)


# ---------------------------------------------------------------- metrics


def test_token_kl_is_the_unreduced_forward_kl():
    student, teacher, mask = make_logits()
    per_position = L.token_kl(student, teacher, temperature=2.0)  # (B, T)
    assert per_position.shape == (2, 5)
    torch.testing.assert_close(per_position.double(), ref_token_kl(teacher, student, 2.0), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(per_position[mask].mean(), L.forward_kl(student, teacher, mask, temperature=2.0))


def test_top1_agreement_counts_matching_argmax_at_masked_positions():
    teacher = torch.zeros(1, 4, 3)
    student = torch.zeros(1, 4, 3)
    teacher[0, :, 0] = 1.0  # teacher argmax 0 everywhere
    student[0, :2, 0] = 1.0  # student agrees at t = 0, 1
    student[0, 2:, 2] = 1.0  # and disagrees at t = 2, 3
    mask = torch.tensor([[True, False, True, True]])
    assert L.top1_agreement(teacher, student, mask) == pytest.approx(1 / 3)
    assert L.top1_agreement(student, teacher, mask) == pytest.approx(1 / 3)
    assert L.top1_agreement(student, teacher) == pytest.approx(0.5)
    assert L.top1_agreement(student, teacher, torch.zeros_like(mask)) == 0


# ---------------------------------------------------------------- cross-entropy and shifting


def make_labels(b=2, t=5, v=11, seed=0):
    labels = torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(seed))
    labels[0, :2] = L.IGNORE_INDEX  # prompt
    labels[1, -1] = L.IGNORE_INDEX  # padding
    return labels


def test_cross_entropy_ignores_minus_100_and_averages_per_token():
    logits, _, _ = make_logits()
    labels = make_labels()
    expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(L.cross_entropy(logits, labels), expected)
    changed = logits.clone()
    changed[labels == L.IGNORE_INDEX] = float("nan")
    torch.testing.assert_close(L.cross_entropy(changed, labels), expected)


def test_cross_entropy_of_fully_ignored_batch_is_zero_with_zero_gradient():
    logits = torch.randn(2, 3, 7, requires_grad=True)
    loss = L.cross_entropy(logits, torch.full((2, 3), L.IGNORE_INDEX))
    loss.backward()
    assert loss == 0 and (logits.grad == 0).all()


def test_cross_entropy_of_bf16_logits_is_computed_in_float32():
    logits, _, _ = make_logits(dtype=torch.bfloat16)
    labels = make_labels()
    loss = L.cross_entropy(logits, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, L.cross_entropy(logits.float(), labels))


def test_cross_entropy_rejects_unshifted_label_shape():
    logits, _, _ = make_logits()
    with pytest.raises(ValueError, match=r"labels \(2, 6\).*\(2, 5\).*shift_for_next_token"):
        L.cross_entropy(logits, torch.zeros(2, 6, dtype=torch.long))


def test_shift_for_next_token_pairs_position_t_with_label_t_plus_1():
    ids = torch.tensor([[3, 1, 4, 1, 5, 9]])  # (1, 6)
    logits = torch.full((1, 6, 10), -20.0)
    logits[0, torch.arange(5), ids[0, 1:]] = 20.0  # a perfect next-token predictor
    labels = ids.clone()
    labels[0, :2] = L.IGNORE_INDEX  # prompt
    shifted_logits, shifted_labels = L.shift_for_next_token(logits, labels)
    assert shifted_logits.shape == (1, 5, 10) and shifted_labels.tolist() == [[L.IGNORE_INDEX, 4, 1, 5, 9]]
    assert L.cross_entropy(shifted_logits, shifted_labels) < 1e-6
    assert L.cross_entropy(logits[:, 1:], labels[:, 1:]) > 1.0  # the wrong alignment is caught
    _, shifted_mask = L.shift_for_next_token(logits, labels != L.IGNORE_INDEX)
    assert shifted_mask.tolist() == [[False, True, True, True, True]]


def test_shift_for_next_token_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5, 11\).*\(2, 4\)"):
        L.shift_for_next_token(torch.zeros(2, 5, 11), torch.zeros(2, 4))


def test_sequence_logprobs_sums_or_averages_labelled_tokens():
    logits, _, _ = make_logits()
    labels = make_labels()
    labels[1] = L.IGNORE_INDEX  # a sequence without labelled tokens
    token_logps = F.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, T)
    keep = labels != L.IGNORE_INDEX
    expected_sum = (token_logps * keep).sum(-1)
    torch.testing.assert_close(L.sequence_logprobs(logits, labels), expected_sum)
    torch.testing.assert_close(
        L.sequence_logprobs(logits, labels, average=True), expected_sum / keep.sum(-1).clamp(min=1)
    )
    assert L.sequence_logprobs(logits, labels)[1] == 0


# ---------------------------------------------------------------- DPO


def dpo_inputs(seed=0, batch=4):
    g = torch.Generator().manual_seed(seed)
    return [-10 - 5 * torch.rand(batch, generator=g) for _ in range(4)]  # pi_c, pi_r, ref_c, ref_r


@PROPERTY
@given(seed=st.integers(0, 1000), rise=st.floats(0.01, 5.0), beta=st.sampled_from([0.01, 0.1, 1.0]))
def test_dpo_loss_falls_when_the_chosen_logprob_rises(seed, rise, beta):
    pi_c, pi_r, ref_c, ref_r = dpo_inputs(seed)
    before, _, _ = L.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=beta)
    after, _, _ = L.dpo_loss(pi_c + rise, pi_r, ref_c, ref_r, beta=beta)
    assert after < before


def test_dpo_at_the_reference_is_log2_with_zero_rewards():
    pi_c, pi_r, _, _ = dpo_inputs()
    loss, chosen, rejected = L.dpo_loss(pi_c, pi_r, pi_c.clone(), pi_r.clone(), beta=0.1)
    torch.testing.assert_close(loss, torch.tensor(math.log(2)))
    assert (chosen == 0).all() and (rejected == 0).all()


def test_dpo_matches_formulas_and_returns_detached_rewards():
    pi_c, pi_r, ref_c, ref_r = dpo_inputs()
    pi_c.requires_grad_()
    ref_c.requires_grad_()
    beta, eps = 0.1, 0.2
    margin = (pi_c - ref_c) - (pi_r - ref_r)
    loss, chosen, rejected = L.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=beta, label_smoothing=eps)
    expected = (-(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(chosen, beta * (pi_c - ref_c).detach())
    torch.testing.assert_close(rejected, beta * (pi_r - ref_r))
    assert not chosen.requires_grad
    loss.backward()
    assert pi_c.grad is not None and ref_c.grad is None  # the reference is a constant
    ipo, _, _ = L.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=beta, loss_type="ipo")
    torch.testing.assert_close(ipo, ((margin - 1 / (2 * beta)) ** 2).mean())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss_type="hinge"), "loss_type"),
        (dict(beta=0.0), "beta"),
        (dict(label_smoothing=0.5), "label_smoothing"),
        (dict(label_smoothing=0.1, loss_type="ipo"), "label_smoothing"),
    ],
)
def test_dpo_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.dpo_loss(*dpo_inputs(), **kwargs)


def test_dpo_rejects_mismatched_shapes():
    pi_c, pi_r, ref_c, _ = dpo_inputs()
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        L.dpo_loss(pi_c, pi_r, ref_c, torch.zeros(3))
