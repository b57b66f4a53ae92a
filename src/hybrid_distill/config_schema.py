"""Structured schemas of the config groups `stage`, `loss`, `student` and `speed`: one dataclass per group option kind,
with every key the group may hold, its type and (where a value is shared or code needs one) its default.

Each group option's YAML names its schema first in its defaults list (`- /schema/stage/distill@_here_`), so Hydra
composes the YAML onto it and refuses a key the schema does not declare (`stage.lrr=0.1`: "Key 'lrr' not in
'DistillStage'"). But Hydra lets `+key=value` and `++key=value` add any key to a structured node, and it would check value types itself
(its own report, exit 1, the first problem only). So composition sees every field typed `Any` (`composable`), and
`config_checks.check_config` checks the composed config against the typed dataclasses here before anything is loaded:
unknown keys (also those added with `+`) and values of the wrong type are one error line naming each key (exit 2).

lit/settings.py builds its typed settings from these fields: `OptimSettings`, `DistillLoss`, `DPOLoss` and
`SpeedSettings` subclass `OptimFields`, `DistillLossFields`, `DPOLossFields` and `SpeedFields`, adding the checks that
need torch; so each default is written once, here. Values that belong to one group option (a stage's recipe, the seqkd
splits, the from-scratch sizes) stay in that option's YAML, and the schema only declares them (no default: required).

Adding a key: a field in the dataclass below (with a default if the options share it), then its value in the
options' YAML where it differs. Adding a stage: a dataclass here (on `Stage`, `TrainingStage` or `GenerationStage`),
its entry in SCHEMAS, and its conf/stage/<name>.yaml naming `/schema/stage/<name>` first in its defaults list.

Only Hydra and OmegaConf are imported here: `python train.py --help` registers the schemas without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf

# a field whose keys Hydra accepts without `+` (student.options: the mixer's option dataclass checks them when the
# student is built, with one error naming an option its mixer does not take)
OPEN = {"open": True}


# ------------------------------------------------------------------------------------------ typed settings' fields


@dataclass(frozen=True, kw_only=True)
class OptimFields:
    """AdamW on the trainable parameters, linear warmup then cosine decay (lit/optim.py): `stage.*` of a training
    stage, or a model's `model.recipe.pretrain_teacher`. The betas are MambaInLlama's."""

    lr: float
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class DistillLossFields:
    """divergence_weight * divergence(teacher, student) + ce_weight * CE(labels), per response token. These defaults are
    loss=kl's (conf/loss/_distillation.yaml bases every distillation loss on them); each loss sets what differs."""

    divergence: str = "kl"  # kl | rkl | jsd | kl_chunked (losses.DIVERGENCES)
    divergence_weight: float = 1.0
    ce_weight: float = 0.0
    temperature: float = 1.0  # divides both logits before the softmax
    t2_scaling: bool = False  # true: multiply the divergence by temperature**2 (Hinton et al. 2015); false: TRL's GKD
    jsd_beta: float = 0.5  # divergence=jsd only: interpolates between forward (0) and reverse (1) KL
    vocab_chunk: int | None = None  # e.g. 16384: the vocabulary-chunked KL (same value, less memory)


@dataclass(frozen=True, kw_only=True)
class DPOLossFields:
    """Direct preference optimisation against a frozen reference (the distilled student), plus ce_weight * CE on the
    chosen response."""

    dpo_beta: float = 0.01
    loss_type: str = "sigmoid"  # sigmoid (DPO) | ipo (losses.DPO_LOSS_TYPES)
    label_smoothing: float = 0.0
    ce_weight: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SpeedFields:
    """The `speed` group: how fast a step runs, never what it computes (each switch has a CPU parity test). These
    defaults are the plain path (speed=default); speed=fast turns on those that pay on a GPU."""

    # N: the distill loss (forward KL + CE) fused with the LM heads, N tokens at a time, from the hidden states: no
    # (B, T, V) logits of student or teacher (losses/fused.py); loss.divergence=kl only
    loss_token_chunk: int | None = None
    teacher_dtype: str | None = None  # bfloat16 | float32: the frozen teacher's weights and forward (null: model.dtype)
    teacher_attention: str = "sdpa"  # the HF teacher's attn_implementation: sdpa | eager | flash_attention_2
    compile: bool | str = False  # torch.compile: false | blocks (each decoder block) | model (the whole decoder)
    activation_checkpointing: bool = False  # recompute each trained block's activations in the backward


# ------------------------------------------------------------------------------------------ group: stage


@dataclass(frozen=True, kw_only=True)
class Named:
    """A group option that names itself (stage.name, loss.name: what the code dispatches on)."""

    name: str


@dataclass(frozen=True, kw_only=True)
class Stage(Named):
    """What every stage has: the name stages/registry.py runs it by, and the steps it trains (trainer.max_steps is
    ${stage.max_steps}; 0 for a stage that does not train)."""

    max_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class TrainingStage(OptimFields, Stage):
    """A stage that trains through Lightning: the optimiser's settings, batches, clipping, validation cadence."""

    batch_size: int
    seq_len: int
    grad_clip: float | None  # null: no clipping
    val_every: int  # validate every this many steps


@dataclass(frozen=True, kw_only=True)
class DistillStage(TrainingStage):
    """stage=distill: a frozen teacher, the hybrid student, the `loss` mix."""


@dataclass(frozen=True, kw_only=True)
class SFTTeacherStage(TrainingStage):
    """stage=sft_teacher: plain fine-tuning of the teacher alone (the throughput baseline)."""

    save: bool  # true: write the fine-tuned teacher to <run dir>/teacher


@dataclass(frozen=True, kw_only=True)
class DPOStage(TrainingStage):
    """stage=dpo: preference optimisation of a distilled student, referenced to itself."""

    init_from: str | None  # a distill run's <run dir>/student
    trainable: str  # mamba | mamba_mlp | all


@dataclass(frozen=True, kw_only=True)
class ScratchStage(TrainingStage):
    """stage=scratch: an architecture sized to target_params, trained from random weights."""

    arch: str  # transformer | hybrid | mamba2 | mamba1
    target_params: int
    hidden_size: int
    num_layers: int
    head_dim: int
    mamba1_head_dim: int
    vocab_size: int


@dataclass(frozen=True, kw_only=True)
class PretrainTeacherStage(Stage):
    """stage=pretrain_teacher: train and cache the tiny teacher (its recipe is model.recipe.pretrain_teacher)."""

    force: bool  # retrain even when the cache holds this teacher


@dataclass(frozen=True, kw_only=True)
class GenerationStage(Stage):
    """A stage in which the teacher generates text, in batches."""

    max_new_tokens: int
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class SeqKDStage(GenerationStage):
    """stage=seqkd: the teacher answers the chat prompts; the answers are saved as a dataset."""

    split: str
    max_prompts: int | None  # null: every prompt of the split
    val_split: str
    max_val_prompts: int | None


@dataclass(frozen=True, kw_only=True)
class CorpusStage(GenerationStage):
    """stage=corpus: the teacher writes a text corpus (sampled answers to varied prompts)."""

    max_documents: int
    temperature: float
    top_p: float


@dataclass(frozen=True, kw_only=True)
class PipelineStep:
    """One step of stage=pipeline: a stage run with the run's overrides plus its own."""

    id: str
    stage: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PipelineStage(Stage):
    """stage=pipeline: its steps in order, each wired to the outputs of the steps before it."""

    steps: tuple[PipelineStep, ...]
    max_prompts: int | None  # a quicker try: every seqkd step answers at most this many training prompts


@dataclass(frozen=True, kw_only=True)
class EvalSuite:
    """The keys of the evaluation suite (conf/eval/default.yaml holds their values); each section is its own mapping."""

    teacher: str | None
    scan_backend: str | None
    device: str
    train_length: int | None
    quality: dict[str, Any]
    recall: dict[str, Any]
    recall_items: dict[str, Any]
    throughput: dict[str, Any]
    speculative: dict[str, Any]
    samples: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class EvalStage(EvalSuite, Stage):
    """stage=eval: the evaluation suite on the student `ckpt` names (a pipeline's last step)."""

    ckpt: str | None


# ------------------------------------------------------------------------------------------ groups: loss, student


@dataclass(frozen=True, kw_only=True)
class DistillationLoss(DistillLossFields, Named):
    """loss=kl, kl_sft, sft, rkl, jsd (conf/loss/_distillation.yaml): the option's name and the mix's settings."""


@dataclass(frozen=True, kw_only=True)
class PreferenceLoss(DPOLossFields, Named):
    """loss=dpo: the option's name and DPO's settings."""


@dataclass(frozen=True, kw_only=True)
class Student:
    """The hybrid student: which mixer its M layers run, how they start, what trains. Shared by student=mamba2 and
    student=mamba1, which set `mixer`."""

    mixer: str  # the mixer of the M layers (models/mixers/): mamba2 | mamba1
    init: str = "attention"  # attention (C<-Q, B<-K, x<-V, out<-O) | random (ablation)
    pattern: str | None = None  # an explicit layer pattern, e.g. "AMAM"; overrides mamba_ratio
    init_from: str | None = None  # a previous student directory: convert more layers of it (stepwise)
    trainable: str = "mamba"  # mamba (only the mixers train) | mamba_mlp (also the MLPs) | all
    conv_init: str = "identity"  # identity | random
    # before step 0, fit the new layers' output scales (and open their gates) to the teacher's attention on this many
    # training batches; 0 = no calibration (as MambaInLlama)
    calibration_batches: int = 8
    # the mixer's options (its options dataclass in models/mixers/, e.g. gate_norm: false, dt_rank: 8)
    options: dict[str, Any] = field(default_factory=dict, metadata=OPEN)


# ------------------------------------------------------------------------------------------ registry

# group -> schema name -> dataclass; Hydra's ConfigStore holds each as schema/<group>/<name>
SCHEMAS: dict[str, dict[str, type]] = {
    "stage": {
        "distill": DistillStage,
        "sft_teacher": SFTTeacherStage,
        "dpo": DPOStage,
        "scratch": ScratchStage,
        "pretrain_teacher": PretrainTeacherStage,
        "seqkd": SeqKDStage,
        "corpus": CorpusStage,
        "pipeline": PipelineStage,
        "eval": EvalStage,
    },
    "loss": {"distillation": DistillationLoss, "dpo": PreferenceLoss},
    "student": {"base": Student},
    "speed": {"base": SpeedFields},
}


class composable:
    """Namespace of the dataclasses Hydra composes against: each schema's fields typed `Any`, defaults kept (named
    after the schema, so that Hydra's messages name it; found here by pickle, e.g. a submitit job's config)."""

    @staticmethod
    def of(schema: type) -> type:
        found = composable.__dict__.get(schema.__name__)
        if found is None:
            fields = []
            for f in dataclasses.fields(schema):
                if f.default is not dataclasses.MISSING:
                    default = field(default=f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    default = field(default_factory=f.default_factory)
                else:
                    default = field(default=MISSING)
                fields.append((f.name, Any, default))
            found = dataclasses.make_dataclass(schema.__name__, fields, namespace={"__schema__": schema})
            found.__module__, found.__qualname__ = __name__, f"composable.{schema.__name__}"
            setattr(composable, schema.__name__, found)
        return found


for _schemas in SCHEMAS.values():  # made at import: a process that unpickles a config finds them without registering
    for _schema in _schemas.values():
        composable.of(_schema)


def schema_of(node: Any) -> type | None:
    """The schema a composed group node was built on (None: not a structured node of this module)."""
    return getattr(OmegaConf.get_type(node), "__schema__", None) if OmegaConf.is_dict(node) else None


_registered = False


def register_schemas() -> None:
    """Put every schema into Hydra's ConfigStore as schema/<group>/<name> (once; conf/ names them in defaults lists)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            node = OmegaConf.structured(composable.of(schema))
            for f in dataclasses.fields(schema):
                if f.metadata.get("open"):
                    OmegaConf.set_struct(node[f.name], False)
            store.store(group=f"schema/{group}", name=name, node=node)
    _registered = True
