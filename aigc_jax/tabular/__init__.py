"""The tabular domain library: real patient cohorts read from installed packages, their encoding and the
classical baselines of risk prediction."""
