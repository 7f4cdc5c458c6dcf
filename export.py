"""Export a trained classifier to ONNX (fp32, optionally int8 behind an accuracy gate) with a model card.

``python export.py outputs/student_ms outputs/student_ms_onnx --quantize int8 [--dataset demo] [--max-drop 1.0]``;
see :mod:`helper.export`.
"""

import sys

from helper.export import main

if __name__ == "__main__":
    sys.exit(main())
