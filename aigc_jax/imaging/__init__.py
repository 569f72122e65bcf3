"""The imaging domain library: CT physics, DICOM/NIfTI ingest and export, de-identification, image quality
and feature spaces. Knows nothing of the trainer."""
