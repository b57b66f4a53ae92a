"""Export a student as a stock transformers model directory, verify it, and import such a directory back."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from ..atomic import publish_dir
from ..errors import UserError, reported_as_user_error
from ..models import HybridConfig, HybridForCausalLM
from . import bamba

WEIGHTS_NAME = "model.safetensors"
VERIFY_TOKENS = 48  # length of the fixed input on which exported and student outputs are compared
LAYER_TOLERANCE = 1e-5  # max relative difference of one layer's output accepted at export (float32 rounding: ~1e-6)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    model_type: str  # config.json's model_type of an exported directory
    check: Callable[[HybridForCausalLM], None]  # raises UserError naming what cannot be exported
    config: Callable[[object], PretrainedConfig]  # HybridConfig -> the stock class's config
    state: Callable[[HybridForCausalLM], dict[str, torch.Tensor]]  # tensors under the stock class's names
    load: Callable[[Path, str], HybridForCausalLM]  # (exported dir, scan_backend) -> student
    read_config: Callable[[Path], HybridConfig]  # exported dir -> the student's config, no weights read


FORMATS = {
    "bamba": ExportFormat(
        "bamba",
        bamba.MODEL_TYPE,
        bamba.check_exportable,
        bamba.to_bamba_config,
        bamba.to_bamba_state,
        bamba.from_bamba,
        bamba.read_student_config,
    ),
}


@dataclass(frozen=True)
class ExportReport:
    out_dir: Path
    format: str
    pattern: str
    student_params: int  # unique parameters (tied weights once)
    exported_params: int  # the exported model's, counted the same way
    differences: Differences | None  # exported vs student on VERIFY_TOKENS tokens in float32; None: not verified

    @property
    def added_params(self) -> int:
        """What repeating x and B from the KV width to the query width costs."""
        return self.exported_params - self.student_params

    def summary(self) -> str:
        d = self.differences
        check = (
            "not verified"
            if d is None
            else (
                f"max abs logit difference {d.logits:.3g}, largest relative layer difference {max(d.layers):.3g} "
                f"(float32, {VERIFY_TOKENS} tokens)"
            )
        )
        return (
            f"exported {self.pattern} as {self.format} to {self.out_dir}\n"
            f"parameters: student {self.student_params:,}, exported {self.exported_params:,} "
            f"(+{self.added_params:,}, +{100 * self.added_params / self.student_params:.2f} %)\n{check}"
        )


def export_student(
    student: HybridForCausalLM | str | os.PathLike,
    out_dir: str | os.PathLike,
    format: str = "bamba",
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
    verify: bool = True,
) -> ExportReport:
    """Write `student` (a model or a saved student directory) as a `format` model directory that
    `transformers.AutoModelForCausalLM.from_pretrained(out_dir)` loads without custom code, with the tokenizer (by
    default the student directory's) and its chat template. With `verify`, the written directory is loaded back
    with transformers and its logits are compared with the student's before it is published. The directory appears
    whole or not at all (written beside it, then renamed); an existing `out_dir` is refused."""
    fmt = FORMATS.get(format)
    if fmt is None:
        raise UserError(f"format={format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.exists():
        raise UserError(f"{out} already exists; choose a new output directory")
    if not isinstance(student, torch.nn.Module):
        student_dir = Path(student)
        student = load_saved_student(student_dir)
        tokenizer = student_dir if tokenizer is None else tokenizer
    if tokenizer is None:
        raise UserError("no tokenizer: pass tokenizer= (a tokenizer or a directory holding one)")
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        with reported_as_user_error(f"tokenizer '{tokenizer}'"):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    fmt.check(student)
    hf_config = fmt.config(student.config)
    tensors = fmt.state(student)
    diff = None

    def write(staging: Path) -> None:
        nonlocal diff
        safetensors.torch.save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        hf_config.save_pretrained(staging)
        GenerationConfig.from_model_config(hf_config).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if verify:
            diff = compare_with_export(student, staging)
            worst = max(range(len(diff.layers)), key=diff.layers.__getitem__)
            if not diff.layers[worst] <= LAYER_TOLERANCE:
                raise RuntimeError(
                    f"export check failed: layer {worst} of the {format} model differs from the "
                    f"student's by {diff.layers[worst]:.3g} of its output scale (> {LAYER_TOLERANCE}); "
                    f"nothing was written to {out}"
                )

    if not publish_dir(out, write):
        raise UserError(f"{out} appeared while exporting; the export was discarded")
    exported = sum(t.numel() for t in tensors.values())
    return ExportReport(out, format, student.config.pattern, unique_param_count(student), exported, diff)


def unique_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once


def load_saved_student(
    directory: str | os.PathLike, scan_backend: str | None = None, what: str | None = None
) -> HybridForCausalLM:
    """A saved student directory (<run dir>/student), or an export of one; a missing, truncated or mismatched file is
    a UserError starting with `what` (default: the directory). scan_backend None: the saved one (an export: auto)."""
    directory = Path(directory)
    what = what or str(directory)
    if not (directory / "config.json").is_file():
        raise UserError(f"{what} is not a saved student (no config.json): pass a distill run's <run dir>/student")
    if exported_format(directory) is not None:
        try:
            return import_student(directory, scan_backend or "auto")
        except UserError as err:
            raise UserError(f"{what}: {err}") from err
    with reported_as_user_error(what):
        return HybridForCausalLM.from_pretrained(str(directory), scan_backend=scan_backend)


def saved_student_config(directory: str | os.PathLike) -> HybridConfig:
    """The HybridConfig of a saved student directory or of an export of one, without reading weights."""
    directory = Path(directory)
    fmt = exported_format(directory)
    with reported_as_user_error(str(directory)):
        if fmt is not None:
            return fmt.read_config(directory)
        return HybridConfig.from_json((directory / "config.json").read_text(), source=str(directory / "config.json"))


def _float32_cpu(student: HybridForCausalLM) -> HybridForCausalLM:
    """The student in float32 on CPU, rebuilt from its config so that its buffers (RoPE frequencies) are computed
    in float32 as transformers computes them, not upcast from a half-precision copy."""
    if student.config.torch_dtype == "float32" and all(p.device.type == "cpu" for p in student.parameters()):
        return student
    config = HybridConfig.from_dict({**student.config.to_dict(), "torch_dtype": "float32"})
    reference = HybridForCausalLM(config)
    reference.load_state_dict({k: v.detach().float().cpu() for k, v in student.state_dict().items()})
    return reference


@dataclass(frozen=True)
class Differences:
    logits: float  # max abs difference of the final logits
    layers: list[float]  # per layer: max abs output difference on the same input, over the output's max abs value


@torch.no_grad()
def compare_with_export(student: HybridForCausalLM, exported_dir: Path, length: int = VERIFY_TOKENS) -> Differences:
    """The student vs the model transformers loads from `exported_dir`, both in float32 on CPU, on a fixed
    pseudo-random token sequence: final logits, and each decoder layer run on the student's own input to that layer
    (float32 rounding compounds over depth in the logits, so deep models are judged layer by layer)."""
    reference = _float32_cpu(student)
    was_training = reference.training
    hf_model = AutoModelForCausalLM.from_pretrained(str(exported_dir), dtype=torch.float32).eval()
    ids = torch.randint(student.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    seen = []  # (input hidden, output hidden) per student layer
    hooks = [
        block.register_forward_hook(lambda _, args, out: seen.append((args[0], out[0]))) for block in reference.layers
    ]
    try:
        ours = reference.eval()(ids).logits
    finally:
        reference.train(was_training)
        for hook in hooks:
            hook.remove()
    body = hf_model.model
    rope = body.rotary_emb(seen[0][0], torch.arange(length)[None])
    layers = []
    for layer, (hidden, expected) in zip(body.layers, seen):
        got = layer(hidden, position_embeddings=rope)[0]
        layers.append(float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-30)))
    return Differences(float((hf_model(ids).logits.float() - ours).abs().max()), layers)


def exported_format(directory: Path) -> ExportFormat | None:
    """The format of an exported directory (by its config.json's model_type), None for anything else."""
    config = directory / "config.json"
    if not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None
    return next((fmt for fmt in FORMATS.values() if fmt.model_type == model_type), None)


def import_student(directory: str | os.PathLike, scan_backend: str = "auto") -> HybridForCausalLM:
    """A student from an exported directory; the x and B rows must still be equal across the query heads of each KV
    head (true for an export; a model trained further in its exported form is refused, naming the tensor)."""
    source = Path(directory)
    fmt = exported_format(source)
    if fmt is None:
        raise UserError(
            f"{source} is not an exported student (config.json model_type must be one of "
            f"{', '.join(f.model_type for f in FORMATS.values())})"
        )
    with reported_as_user_error(str(source)):
        return fmt.load(source, scan_backend)
