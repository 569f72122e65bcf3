"""Evaluators of the families (see `aigc_jax/core/evaluation.py` for the contract; registered by type in
`aigc_jax/registry.py`). One file per evaluator type."""
