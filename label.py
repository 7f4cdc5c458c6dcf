"""Write a teacher's outputs for a data set (JSON Lines, resumable), to distil without loading the teacher.

``python label.py --teacher outputs/teacher --dataset ../shared/data/sst2 --output teacher_outputs.jsonl``
(flags: ``--subset``, ``--split``, ``--text-fields``, ``--id-field``, ``--max-length``; logic in
:mod:`helper.labelling`).
"""

import sys

from helper.labelling import main

if __name__ == "__main__":
    sys.exit(main())
