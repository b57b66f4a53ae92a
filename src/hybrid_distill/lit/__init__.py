"""LightningModules: teacher pretraining, distillation, DPO."""
