"""Differentially private training: DP-SGD over any task's per-example loss (`dp_sgd`), the Poisson sampling
plan and its accountant (`accountant`)."""
