"""Benchmarks of the distiller: teacher fine-tuning, recipes side by side, training throughput, interleaved rounds.

Run the scripts from the repository root (``python benchmarks/throughput.py --help``); the modules here are the
pieces they share.
"""
