"""Stages: what one `python train.py stage=...` run does. Each returns a dict of summary metrics."""
