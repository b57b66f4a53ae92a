"""The structured schemas of the stage, loss, student and speed groups (config_schema.py): every shipped config composes
on them (group options, experiments and their sweeps, pipeline steps, the Optuna search, the README's commands), a key
a schema does not declare or a value of the wrong type is one error line naming it, also when added with `+` (exit 2),
and each default is written once: in the schema the typed settings share, not again in a YAML file."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from helpers import REPO, compose_config, train_cli
from hybrid_distill.cli import run
from hybrid_distill.config_checks import check_config, schema_problems
from hybrid_distill.config_schema import (
    SCHEMAS,
    DistillLossFields,
    DPOLossFields,
    OptimFields,
    SpeedFields,
    schema_of,
)
from hybrid_distill.errors import UserError
from hybrid_distill.lit.settings import DistillLoss, DPOLoss, OptimSettings, SpeedSettings, from_config
from hybrid_distill.paths import config_dir
from test_reliability_errors import one_error_line

CONF = Path(config_dir())
GROUPS = ("stage", "loss", "student", "speed")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def experiments() -> list[str]:
    return sorted(
        str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml")
    )


def sweep_members(overrides: list[str]) -> list[list[str]]:
    """Single-run override lists covering every value of every sweep in `overrides` (one sweep varied at a time, the
    others at their first value), as `-m` would launch them."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [
        [f"{o.input_line.split('=', 1)[0]}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    members = [[choices[0] for choices in values]]
    for i, choices in enumerate(values):
        members += [[*members[0][:i], choice, *members[0][i + 1 :]] for choice in choices[1:]]
    return members


def composes_cleanly(tmp_path: Path, overrides: list[str], shrink: bool = False):
    """The config `python train.py <overrides>` runs with; check_config finds nothing wrong in it."""
    cfg = compose_config(tmp_path, overrides, shrink=shrink)
    check_config(cfg)
    return cfg


# ----------------------------------------------------------------------------------------- what composes on them


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_on_its_schema(tmp_path, group):
    for option in options(group):
        cfg = composes_cleanly(tmp_path, [f"{group}={option}"], shrink=True)
        schema = schema_of(cfg[group])
        assert schema in SCHEMAS[group].values(), f"{group}={option} names no schema in its defaults list"
        if group == "stage":
            assert schema is SCHEMAS["stage"][option]


def test_a_composed_config_unpickles_in_a_fresh_process(tmp_path):
    """A submitit job receives its config pickled: the classes of the composed nodes are found by name."""
    cfg = compose_config(tmp_path, ["stage=pipeline", "loss=dpo"])
    code = (
        "import pickle, sys; from hybrid_distill.config_schema import schema_of; cfg = pickle.load(sys.stdin.buffer); "
        f"print(' '.join(schema_of(cfg[g]).__name__ for g in {GROUPS!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(cfg), capture_output=True, env=env)
    assert proc.stdout.decode().split() == ["PipelineStage", "PreferenceLoss", "Student", "SpeedFields"], proc.stderr


def test_every_experiment_and_its_sweep_members_compose(tmp_path):
    composed = 0
    for name in experiments():
        cfg = composes_cleanly(tmp_path, [f"experiment={name}"])
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        for member in sweep_members([f"{key}={value}" for key, value in params.items()]) if params else []:
            composes_cleanly(tmp_path, [f"experiment={name}", *member])
            composed += 1
        composed += 1
    assert composed > len(experiments())  # the sweeps were composed too


@pytest.mark.parametrize("source", ["stage=pipeline", "experiment=stepwise", "experiment=smollm2/stepwise"])
def test_every_pipeline_step_composes_as_the_pipeline_composes_it(tmp_path, source):
    steps = OmegaConf.to_container(compose_config(tmp_path, [source], shrink=False).stage.steps, resolve=True)
    for step in steps:
        cfg = composes_cleanly(tmp_path, [f"stage={step['stage']}", *step["overrides"]])
        assert cfg.stage.name == step["stage"]


def test_the_optuna_search_space_names_keys_of_the_schemas(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="optional extra: pip install -e '.[optuna]'")
    cfg = composes_cleanly(tmp_path, ["hparams_search=optuna"])
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key
        composes_cleanly(tmp_path, ["hparams_search=optuna", f"{key}=1"])  # a sampled value is a plain override


def readme_commands() -> list[list[str]]:
    """The overrides of every `python train.py ...` the README shows (code blocks and inline), placeholders such as
    `<run dir>` filled with a path, flags (-m, --cfg, ...) dropped."""
    text = (REPO / "README.md").read_text()
    lines = [
        line
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.replace("\\\n", " ").splitlines()
    ]
    lines += re.findall(r"`(python train\.py [^`]*)`", text)
    commands = []
    for line in lines:
        if not line.startswith("python train.py") or "$(" in line:
            continue
        tokens = shlex.split(re.sub(r"<[^>]*>", "X", line), comments=True)[2:]
        overrides = [t for t in tokens if re.match(r"^[+~]*[\w./@-]+=", t)]
        # `stage=<name>` stands for any option of the group: the options compose one by one elsewhere
        commands.append([t for t in overrides if not (t.endswith("=X") and (CONF / t[:-2]).is_dir())])
    return commands


def test_every_train_command_of_the_readme_composes(tmp_path):
    commands = readme_commands()
    assert len(commands) > 30 and ["student.pattern=MAMA"] in commands
    for command in commands:
        for member in sweep_members(command) if command else [[]]:
            composes_cleanly(tmp_path, member)


def readme_inline_overrides() -> list[list[str]]:
    """Overrides of the schema groups that the README's prose names in `code` (e.g. `student.options.gate_norm=false`),
    without placeholders."""
    text = re.sub(r"```.*?```", "", (REPO / "README.md").read_text(), flags=re.S)
    key = r"(stage|loss|student|speed)(\.\w+)*=[^<>|,.][^<>|,]*"
    spans = [span.removeprefix("python train.py ").split() for span in re.findall(r"`([^`\n]+)`", text)]
    return [tokens for tokens in spans if all(re.fullmatch(key, t) for t in tokens) and "..." not in " ".join(tokens)]


def test_every_override_the_readme_names_is_a_key_of_a_schema(tmp_path):
    """Each composes with the stage it belongs to (stage.save is sft_teacher's); values the README shows as examples of
    errors (`stage.lr=abc`) may be wrong, but never the key."""
    spans = readme_inline_overrides()
    assert ["student.options.gate_norm=false"] in spans and ["stage=pipeline", "stage.max_prompts=64"] in spans
    for span in spans:
        stages = [[]] if any(t.startswith("stage=") for t in span) else [[f"stage={s}"] for s in options("stage")]
        for stage in stages:
            try:
                cfg = compose_config(tmp_path, [*stage, *span], shrink=False)
            except Exception:  # a key of another stage: Hydra refuses it
                continue
            unknown = [m for g in GROUPS for _, m in schema_problems(cfg[g], schema_of(cfg[g]), g, g) if "no key" in m]
            assert not unknown, (span, unknown)
            break
        else:
            pytest.fail(f"README override {span} composes with no stage")


# ----------------------------------------------------------------------------------------- what they refuse


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["+stage.lrr=0.1"],  # Hydra's own hint after refusing stage.lrr=0.1
            "stage.lrr: stage=distill has no key 'lrr' (did you mean stage.lr?); its keys: name, max_steps, lr, ",
        ),
        (
            ["++loss.temprature=2"],
            "loss.temprature: loss=kl_sft has no key 'temprature' (did you mean loss.temperature?)",
        ),
        (["+student.mixr=mamba1"], "student.mixr: the student group has no key 'mixr' (did you mean student.mixer?)"),
        (["+speed.compil=blocks"], "speed.compil: the speed group has no key 'compil' (did you mean speed.compile?)"),
        (["stage=seqkd", "+stage.val_every=5"], "stage.val_every: stage=seqkd has no key 'val_every'"),
        (
            ["stage=pipeline", "stage.steps=[{id:a,stage:distill,overides:[]}]"],
            "stage.steps.0.overides: stage.steps.0 of stage=pipeline has no key 'overides' (did you mean "
            "stage.steps.0.overrides?)",
        ),
        (["speed.activation_checkpointing=yes"], "speed.activation_checkpointing='yes' must be true or false"),
        (["stage=seqkd", "stage.max_prompts=many"], "stage.max_prompts='many' must be an integer or null"),
        (["stage.betas=[0.9]"], "stage.betas=[0.9] must be a list of 2 numbers"),
        (["loss.vocab_chunk=big"], "loss.vocab_chunk='big' must be an integer or null"),
        (["student.calibration_batches=1.5"], "student.calibration_batches=1.5 must be an integer"),
        (["stage=dpo", "stage.init_from=[a]"], "stage.init_from=['a'] must be a string or null"),
        (["stage=pipeline", "stage.steps=[{id:a}]"], "stage.steps.0.stage is missing: stage.steps.0 of stage=pipeline"),
    ],
)
def test_unknown_keys_and_wrong_types_are_one_error_before_anything_loads(tmp_path, overrides, message):
    with pytest.raises(UserError) as err:
        run(compose_config(tmp_path, ["logger=none", *overrides]))
    assert str(err.value).startswith(message)


def test_every_problem_is_named_in_one_error(tmp_path):
    with pytest.raises(UserError) as err:
        run(compose_config(tmp_path, ["logger=none", "seed=-1", "+stage.lrr=1", "speed.compile=3"]))
    problems = str(err.value).split("; its keys: ")[0], str(err.value).rsplit("; ", 1)[1]
    assert problems == (
        "seed=-1 must be >= 0; stage.lrr: stage=distill has no key 'lrr' (did you mean stage.lr?)",
        "speed.compile=3 must be true or false or a string",
    )


def test_a_key_added_with_plus_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    proc = train_cli(["+stage.lrr=0.1", "speed.activation_checkpointing=maybe", "logger=none"], tmp_path, tmp_path)
    line = one_error_line(proc)
    assert line.startswith("error: stage.lrr: stage=distill has no key 'lrr' (did you mean stage.lr?)")
    assert line.endswith("; speed.activation_checkpointing='maybe' must be true or false")
    assert not list((tmp_path / "train" / "runs").iterdir())  # nothing was run: no run directory is left


def test_the_mixer_options_take_keys_without_plus(tmp_path):
    """student.options is open (the mixer's option dataclass names a wrong one when the student is built)."""
    cfg = composes_cleanly(tmp_path, ["student=mamba1", "student.options.dt_rank=8"])
    assert cfg.student.options == {"dt_rank": 8}


# ----------------------------------------------------------------------------------------- one source of defaults


def test_the_typed_settings_are_the_schemas_fields():
    for settings, fields in [
        (OptimSettings, OptimFields),
        (DistillLoss, DistillLossFields),
        (DPOLoss, DPOLossFields),
        (SpeedSettings, SpeedFields),
    ]:
        assert issubclass(settings, fields)
        assert [f.name for f in dataclasses.fields(settings)] == [f.name for f in dataclasses.fields(fields)]


def test_the_composed_groups_carry_the_settings_defaults(tmp_path):
    cfg = compose_config(tmp_path, ["speed=default", "loss=kl"])
    assert from_config(SpeedSettings, cfg.speed, "speed") == SpeedSettings()
    assert from_config(DistillLoss, cfg.loss, "loss") == DistillLoss()
    assert from_config(OptimSettings, cfg.stage, "stage") == OptimSettings(
        lr=cfg.stage.lr, warmup_steps=cfg.stage.warmup_steps
    )
    dpo = compose_config(tmp_path, ["stage=dpo"])
    assert from_config(DPOLoss, dpo.loss, "loss") == DPOLoss()


def option_schema(group: str, path: Path) -> type:
    """The schema a group option's YAML composes on: named first in its defaults list, directly or through the option
    it builds on (loss=kl on _distillation, speed=fast on default)."""
    first = str(OmegaConf.load(path).defaults[0])
    if first.startswith(f"/schema/{group}/"):
        return SCHEMAS[group][first.split("/")[3].split("@")[0]]
    return option_schema(group, path.with_name(f"{first}.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_no_option_repeats_a_default_of_its_schema(group):
    """A YAML option names its schema first in its defaults list and sets only what differs from the schema."""
    for path in sorted((CONF / group).glob("*.yaml")):
        schema = option_schema(group, path)
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        node = raw.get(group, {}) if path.read_text().startswith("# @package _global_") else raw
        repeated = [
            f.name
            for f in dataclasses.fields(schema)
            if f.default is not dataclasses.MISSING and node.get(f.name, "absent") == f.default
        ]
        assert not repeated, f"{path.name} repeats the defaults of {schema.__name__}: {repeated}"
