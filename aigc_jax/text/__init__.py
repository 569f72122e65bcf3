"""The text domain library: real medical corpora read from installed packages, and subword tokenizers."""
