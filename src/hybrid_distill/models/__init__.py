"""Hybrid students: Llama decoders whose sequence mixers are attention (A) or Mamba (M), per a pattern "AMAM...".

Follows "The Mamba in the Llama" (Wang et al. 2024) and its code (jxiw/MambaInLlama):
- a Mamba layer starts from the attention layer it replaces: C <- W_Q, B <- W_K, x <- W_V, out <- W_O, with
  d_state = head_dim, one head per query head; GQA kept through groups (x and B stay at the KV width, x is
  repeated to the query heads as an activation, the scan reads B per group); MLPs, norms, embeddings and LM head are
  copied from the teacher; kept attention layers are the teacher's, unchanged (ratio 0 reproduces the teacher);
  as in the reference, W_Q is copied unscaled (no 1/sqrt(head_dim)) and RoPE is dropped, so with decay 1, dt 1,
  an identity conv whose activation is the identity too (conv_activation="identity"; the default SiLU after the
  conv makes it non-linear), no gate and D 0 a mixer computes exactly causal linear attention
  (tests/test_models_init.py);
- Mamba-2 mixer: one in_proj [z, x, B, C, dt], depthwise conv (kernel 4) over x, B, C at KV width,
  dt_bias with softplus(dt_bias) log-uniform in [1e-3, 0.1], A_log = log U[1, 16], D = 1, gated RMSNorm per head;
- Mamba-1 mixer: per-channel A with A_log = log(1..N) (S4D-real), low-rank dt from the hidden state, D = 1, y*silu(z);
- attention placement for 50/75/87.5 % on 32 layers exactly as the paper (allocation.py gives the rule);
- stepwise replacement (convert_student) starts the new Mamba layers from the student's attention;
- by default only the Mamba mixers train (set_trainable "mamba"; "mamba_mlp" unfreezes the MLPs as an option).

Deviations, and why:
- the conv has an `identity` init option (last tap 1) - the default - so an attention-initialised layer starts as
  gated linear attention rather than a randomly blurred one; `conv_init=random` gives the reference behaviour.
- calibrate.calibrate_student (the distill stage runs it on student.calibration_batches training batches): the new
  mixers' gates are opened and their out_proj columns rescaled by least squares to match the teacher attention's
  output; without it the copied W_O makes the untrained student far worse than dropping the replaced layers.
- Mamba-1: B and C also pass through the conv (as in Mamba-2; MambaInLlama's Mamba-1 convolves x only), so both
  mixers share one code path; with the identity conv init this changes nothing at initialisation.
- generation has a real cache (KV for attention, conv + SSM state for Mamba) with prefill-then-decode, unlike the
  reference HF path (use_cache=False); by default on the static engine (static_engine.py: in-place buffers, CUDA
  graphs), which also continues right-padded batches; left-padded batches are refused rather than mis-handled.
- all parameters (A_log, D, dt_bias included) live in the model dtype; the scans compute in float32.
- Mamba-1's gate is y * silu(z) applied outside the scan (not fused into it), to share the gate code with Mamba-2.
"""

from .allocation import layer_pattern, resolve_pattern, validate_pattern
from .attention import Attention
from .build import build_student, convert_student, teacher_as_student
from .calibrate import calibrate_student
from .cache import AttentionState, HybridCache, StaticCache
from .config import HybridConfig
from .generation import next_token
from .hf_model import HybridPretrainedConfig, register_auto_classes
from .hybrid import HybridBlock, HybridForCausalLM, HybridOutput
from .mixers import MixerSpec, make_mixer, mixer_spec, register
from .mixers.mamba1 import Mamba1Mixer
from .mixers.mamba2 import Mamba2Mixer
from .mixers.mamba_base import MambaState, init_from_attention
from .trainable import param_counts, set_trainable

__all__ = [
    "Attention",
    "AttentionState",
    "HybridBlock",
    "HybridCache",
    "HybridConfig",
    "HybridForCausalLM",
    "HybridOutput",
    "HybridPretrainedConfig",
    "StaticCache",
    "Mamba1Mixer",
    "Mamba2Mixer",
    "MambaState",
    "MixerSpec",
    "build_student",
    "calibrate_student",
    "convert_student",
    "init_from_attention",
    "layer_pattern",
    "make_mixer",
    "mixer_spec",
    "next_token",
    "param_counts",
    "register",
    "resolve_pattern",
    "set_trainable",
    "teacher_as_student",
    "validate_pattern",
]

register_auto_classes(HybridForCausalLM)
