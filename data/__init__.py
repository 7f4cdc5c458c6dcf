"""Data loading for Transformer Distiller: sources, field detection, validation and tokenized batches."""
