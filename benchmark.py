"""Compare fine-tuned classifiers (a teacher and its students): size, batch-1 latency, throughput and quality.

Usage (from the repository root)::

    python benchmark.py outputs/teacher outputs/student_ms outputs/student_ms_onnx \
        outputs/student_ms_onnx/model_int8.onnx --names teacher mix-step onnx-fp32 onnx-int8 --dataset demo \
        --label-names negative positive [--split validation] [--threads 2] [--batch-size 64] [--latency-runs 100] \
        [--rounds 5] [--ratio-to teacher]

Models are PyTorch folders (``*ForSequenceClassification``) or ONNX models written by ``export.py``; all are checked
before anything is timed, then timed in interleaved batch-1 latency rounds and run over the whole split for
throughput and quality. Prints a Markdown table and writes ``results.csv``, ``results.json`` and
``accuracy_vs_latency.png`` to ``--output-dir``. How each number is measured: the README ("Comparing models") and
:mod:`helper.bench`.
"""

import sys

from helper.bench import main

if __name__ == "__main__":
    sys.exit(main())
