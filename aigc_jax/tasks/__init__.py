"""Objectives on the one trainer (see task.py for the contract); registered by name in
`aigc_jax/registry.py`."""
