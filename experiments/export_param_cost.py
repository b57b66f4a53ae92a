"""What the Bamba export costs in parameters (x and B repeated from the KV width to the query heads), per teacher
preset and mamba_ratio: student vs exported parameter counts, on the meta device (no weights needed).

    python experiments/export_param_cost.py

tests/test_export.py checks on real exports that `added_parameters` equals the measured difference.
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig

from hybrid_distill.paths import config_dir
from hybrid_distill.export.bamba import added_parameters
from hybrid_distill.models import HybridConfig, HybridForCausalLM, resolve_pattern

PRESETS = ("smollm2_135m", "llama3_2_1b", "llama3_8b")
# fields of the real checkpoints that their presets leave out (a preset lists what is checked against a checkpoint)
CHECKPOINT_FIELDS = {"smollm2_135m": {"tie_word_embeddings": True}}
RATIOS = (0.5, 0.75, 0.875)


def preset_llama(name: str) -> LlamaConfig:
    arch = OmegaConf.to_container(OmegaConf.load(f"{config_dir()}/model/{name}.yaml").architecture)
    return LlamaConfig(**{**arch, **CHECKPOINT_FIELDS.get(name, {})})


def main() -> None:
    print("| teacher | mamba_ratio | student parameters | exported | added | added % |")
    print("|---|---|---|---|---|---|")
    for name in PRESETS:
        llama = preset_llama(name)
        for ratio in RATIOS:
            config = HybridConfig.from_llama(llama, resolve_pattern(llama.num_hidden_layers, ratio, None))
            with torch.device("meta"):
                student = sum(p.numel() for p in HybridForCausalLM(config).parameters())
            added = added_parameters(config)
            print(f"| {name} | {ratio} | {student:,} | {student + added:,} | {added:,} | {100 * added / student:.2f} |")


if __name__ == "__main__":
    main()
