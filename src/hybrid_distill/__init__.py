"""hybrid_distill: distil Llama-family Transformers into Mamba/attention hybrids."""

__version__ = "0.1.0"
