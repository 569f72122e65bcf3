"""The modality-free core: trainer, state, optimizer, sharding, checkpoints, preemption, run loading and
reporting. Nothing here imports imaging or text code (tests/test_imports.py checks).
"""
