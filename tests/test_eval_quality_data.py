"""Which held-out data eval.py measures quality on: a DPO run trains on preference pairs, whose batches hold
chosen/rejected sequences, not answers; quality then comes from the chat data its pairs were built from (a crash with
KeyError 'input_ids' before), and pairs from elsewhere ask for suite.quality.source in one line."""

from __future__ import annotations

import pytest

from helpers import compose_config
from hybrid_distill.errors import UserError
from hybrid_distill.eval.loading import Checkpoint
from hybrid_distill.eval.suite import quality_data


def _dpo_run(tmp_path, *data):
    cfg = compose_config(tmp_path, ["stage=dpo", "data=preference", *data])
    return Checkpoint(student_dir=None, lightning_ckpt=None, run_dir=tmp_path, run_cfg=cfg)


def test_a_dpo_run_on_pairs_from_chat_is_measured_on_that_chat_data(tmp_path):
    data_cfg, described, key = quality_data(_dpo_run(tmp_path, "+data.pairs_from_chat=true"), None)
    assert str(data_cfg._target_).endswith("ChatDataModule") and data_cfg.source == "builtin"
    assert described == "chat from builtin, validation split" and key == "suite.quality.source"


def test_a_dpo_run_on_preference_rows_asks_for_a_quality_source(tmp_path):
    with pytest.raises(UserError, match="suite.quality.source"):
        quality_data(_dpo_run(tmp_path), None)
    data_cfg, _, _ = quality_data(_dpo_run(tmp_path), "builtin")  # given: used as it is
    assert str(data_cfg._target_).endswith("ChatDataModule")
