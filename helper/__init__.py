"""LightningModules, checkpoint I/O, model loading and the command-line layer of Transformer Distiller."""
