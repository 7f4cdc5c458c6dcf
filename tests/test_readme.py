"""Every Python snippet of the README runs as written (in a temporary folder, on tiny models and the demo data).

Each snippet is matched to the setup that gives it what it assumes (its free names, the folders it reads); a snippet
without a setup fails, so a new snippet cannot go unchecked. Training snippets keep Lightning's ``Trainer()`` as
written: Lightning reads ``PL_TRAINER_<ARGUMENT>`` environment variables as defaults of every ``Trainer``, which makes
the run 2 steps long and keeps its files in the temporary folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tiny import REPO_ROOT, save_tiny_model

SNIPPETS = re.findall(r"^```python\n(.*?)^```", (REPO_ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)


def _classifier(folder: Path, tokenizer_path: str, layers: int) -> Path:
    """A tiny random BERT classifier with the MiniLM tokenizer and named classes, saved as a model folder."""
    return save_tiny_model(folder, tokenizer_path, ["negative", "positive"], layers=layers)


def python_api(tmp_path: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``dataset`` (a small DatasetDict of the demo data) and ``teacher_path`` (a 6-layer tiny teacher); 2 steps."""
    from data.sources import load_source

    demo = load_source("demo")
    dataset = {"train": demo["train"].select(range(64)), "validation": demo["validation"].select(range(16))}
    for name, value in {
        "MAX_STEPS": "2",
        "LIMIT_VAL_BATCHES": "1",
        "NUM_SANITY_VAL_STEPS": "0",
        "ACCELERATOR": "'cpu'",
        "ENABLE_PROGRESS_BAR": "False",
        "DEFAULT_ROOT_DIR": repr(str(tmp_path)),
    }.items():
        monkeypatch.setenv(f"PL_TRAINER_{name}", value)
    from datasets import DatasetDict

    return {"dataset": DatasetDict(dataset), "teacher_path": str(_classifier(tmp_path / "teacher", minilm_path, 6))}


def python_api_ran(namespace: dict, tmp_path: Path, printed: str) -> None:
    distiller = namespace["distiller"]
    assert distiller.trainer.global_step == 2
    assert distiller.student.config.num_hidden_layers == 2
    assert list(tmp_path.rglob("*.ckpt")), "the ModelCheckpoint of the snippet saved nothing"


def exported_folders(tmp_path: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``outputs/student_ms`` (a tiny classifier) and its ``export.py --quantize int8`` export."""
    from helper.export import export_model

    student = _classifier(tmp_path / "outputs" / "student_ms", minilm_path, 2)
    onnx = tmp_path / "outputs" / "student_ms_onnx"
    export_model(student, onnx, quantize="int8", max_drop=100.0, dataset="demo", max_samples=16, threads=1)
    return {}


def exported_folders_ran(namespace: dict, tmp_path: Path, printed: str) -> None:
    lines = printed.strip().splitlines()
    assert len(lines) == 2 and "'label'" in lines[0] and lines[1] in ("negative", "positive"), printed


TWEETS = ["so happy today", "this is awful and i am angry", "what a sad day", "tomorrow will be better"]


def llm_teacher(tmp_path: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The LLM recipe on a tiny random GPT-2 (offline: ``from_pretrained`` of the snippet's Hub name returns it) and
    four tweets at ``../shared/data/tweets_unlabeled/train.jsonl`` relative to the snippet's folder."""
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from data.vocab import train_wordpiece

    prompt_words = "Tweet The emotion of this tweet anger joy optimism or sadness is"
    tokenizer = train_wordpiece([*TWEETS, prompt_words], 200, min_frequency=1)
    torch.manual_seed(0)
    llm = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    ).eval()
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", staticmethod(lambda name, **kw: llm))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", staticmethod(lambda name, **kw: tokenizer))
    tweets = tmp_path / "shared" / "data" / "tweets_unlabeled"
    tweets.mkdir(parents=True)
    (tweets / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TWEETS))
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    return {}


def llm_teacher_ran(namespace: dict, tmp_path: Path, printed: str) -> None:
    import json
    import math

    from data.data_module import ClfDataModule

    outputs = tmp_path / "repo" / "llm_outputs.jsonl"
    rows = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert [r["text"] for r in rows] == TWEETS
    for row in rows:
        assert len(row["teacher_logits"]) == 4 and math.isclose(
            sum(math.exp(v) for v in row["teacher_logits"]), 1.0, abs_tol=1e-5
        )
    data = tmp_path / "labelled"  # the file is what a run reads as teacher outputs
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": i}) + "\n" for i, t in enumerate(TWEETS)))
    dm = ClfDataModule(
        str(data), teacher_outputs=str(outputs), val_fraction=0.5, label_names=["anger", "joy", "optimism", "sadness"]
    )
    assert dm.outputs.active and len(dm.outputs.table) == len(TWEETS)


#: A distinctive line of each snippet -> the setup that gives it its names and files, and the check of its result.
SETUPS: dict[str, tuple[Callable[..., dict], Callable[[dict, Path, str], None]]] = {
    "distiller = BaseDistiller(": (python_api, python_api_ran),
    "session = ort.InferenceSession(": (exported_folders, exported_folders_ran),
    "llm = AutoModelForCausalLM.from_pretrained(": (llm_teacher, llm_teacher_ran),
}


def _setup_of(snippet: str) -> str:
    keys = [key for key in SETUPS if key in snippet]
    assert len(keys) == 1, f"no setup in tests/test_readme.py for this README snippet (add one to SETUPS):\n{snippet}"
    return keys[0]


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.splitlines()[0][:40] for s in SNIPPETS])
def test_snippet_runs(
    snippet: str,
    tmp_path: Path,
    minilm_path: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup, check = SETUPS[_setup_of(snippet)]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__", **setup(tmp_path, minilm_path, monkeypatch)}
    capsys.readouterr()
    exec(compile(snippet, "README.md", "exec"), namespace)
    check(namespace, tmp_path, capsys.readouterr().out)
