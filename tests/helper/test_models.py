"""Tests for helper.models: model paths and aliases, loading classifiers, and making students from teachers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from helper.models import (
    load_classifier,
    load_tokenizer,
    resolve_model_path,
    student_from_config,
    student_from_layers,
)
from tests.tiny import tiny_bert


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture
def base_encoder_dir(tmp_path: Path) -> Path:
    """A tiny base encoder folder (architectures=['BertModel']), like a pretrained checkpoint without a head."""
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    BertModel(config).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


# ---------------------------------------------------------------------------------------------- resolve_model_path
@pytest.mark.parametrize("alias", ["minilm", "MiniLM", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_aliases_resolve_to_the_packaged_minilm(alias: str, minilm_path: str) -> None:
    resolved = resolve_model_path(alias)
    assert Path(resolved).resolve() == Path(minilm_path).resolve()
    assert (Path(resolved) / "config.json").is_file()


@pytest.mark.parametrize("name", ["./nope", "../nope", "/definitely/not/here", "~/no-such-model-dir", "a/b/c"])
def test_missing_local_paths(name: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_path(name)
    assert repr(name) in str(info.value)
    assert "'minilm'" in str(info.value)  # names the alias that works offline


def test_missing_folder_under_an_existing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(FileNotFoundError, match="'outputs/nope'"):
        resolve_model_path("outputs/nope")  # not mistaken for a Hub name 'user/model'


def test_file_instead_of_folder(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        resolve_model_path(str(path))


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.json") as info:
        resolve_model_path(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_existing_folder_and_tokenizer_alias(base_encoder_dir: Path, minilm_path: str) -> None:
    assert resolve_model_path(base_encoder_dir) == str(base_encoder_dir)
    tok = load_tokenizer("minilm")
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]


# ---------------------------------------------------------------------------------------------- load_classifier
def test_base_encoder_gets_a_head_sized_from_the_data(base_encoder_dir: Path) -> None:
    names = {0: "anger", 1: "joy", 2: "sadness"}
    model = load_classifier(base_encoder_dir, num_labels=3, id2label=names)
    assert isinstance(model, BertForSequenceClassification)
    assert model.classifier.out_features == 3
    assert model.config.id2label == names
    assert model.config.label2id == {"anger": 0, "joy": 1, "sadness": 2}
    assert model.name_or_path == str(base_encoder_dir)
    encoder = BertModel.from_pretrained(base_encoder_dir)
    for name, param in encoder.state_dict().items():  # the pretrained encoder weights are kept
        assert torch.equal(model.bert.state_dict()[name], param), name


def test_packaged_minilm_gets_a_head(minilm_path: str) -> None:
    model = load_classifier("minilm", num_labels=4)
    assert model.classifier.out_features == 4
    assert model.config.num_hidden_layers == 6
    with pytest.raises(ValueError, match="not a sequence classifier"):
        load_classifier("minilm", num_labels=2, require_head=True)


def test_require_head_refuses_a_base_encoder(base_encoder_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"architectures=\['BertModel'\]") as info:
        load_classifier(base_encoder_dir, num_labels=2, require_head=True)
    assert str(base_encoder_dir) in str(info.value)


def test_finetuned_classifier_label_count_mismatch(tmp_path: Path) -> None:
    tiny_bert(layers=1, hidden=32, heads=2, num_labels=3).save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError) as info:
        load_classifier(tmp_path / "clf", num_labels=2)
    assert "num_labels=3" in str(info.value) and "2 classes" in str(info.value)
    model = load_classifier(tmp_path / "clf", num_labels=3, require_head=True)
    assert model.classifier.out_features == 3


def test_finetuned_classifier_keeps_weights_and_real_label_names(tmp_path: Path, tiny_batch: dict) -> None:
    clf = tiny_bert(layers=1, hidden=32, heads=2, num_labels=2)
    clf.config.id2label, clf.config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
    clf.save_pretrained(tmp_path / "named")
    loaded = load_classifier(tmp_path / "named", num_labels=2, id2label={0: "LABEL_0", 1: "LABEL_1"})
    assert loaded.config.id2label == {0: "bad", 1: "good"}  # its own names win over generic ones
    torch.testing.assert_close(logits(loaded, tiny_batch), logits(clf, tiny_batch))

    tiny_bert(layers=1, hidden=32, heads=2).save_pretrained(tmp_path / "generic")
    relabelled = load_classifier(tmp_path / "generic", num_labels=2, id2label={0: "neg", 1: "pos"})
    assert relabelled.config.id2label == {0: "neg", 1: "pos"}  # generic LABEL_i names are replaced


# ---------------------------------------------------------------------------------------------- students
def test_student_from_layers_copies_the_chosen_layers(tiny_teacher: BertForSequenceClassification) -> None:
    student = student_from_layers(tiny_teacher, [1, 3])
    assert student.config.num_hidden_layers == 2
    assert len(student.bert.encoder.layer) == 2
    assert tiny_teacher.config.num_hidden_layers == 4 and len(tiny_teacher.bert.encoder.layer) == 4
    for new, old in ((0, 1), (1, 3)):
        s_state = student.bert.encoder.layer[new].state_dict()
        t_state = tiny_teacher.bert.encoder.layer[old].state_dict()
        assert s_state.keys() == t_state.keys()
        for key in t_state:
            assert torch.equal(s_state[key], t_state[key]), (new, old, key)
    for key, value in tiny_teacher.bert.embeddings.state_dict().items():
        assert torch.equal(student.bert.embeddings.state_dict()[key], value)
    assert torch.equal(student.classifier.weight, tiny_teacher.classifier.weight)
    with torch.no_grad():  # a copy, not shared parameters
        student.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)
    assert not torch.equal(
        student.bert.encoder.layer[0].attention.self.query.weight,
        tiny_teacher.bert.encoder.layer[1].attention.self.query.weight,
    )


def test_student_layer_outputs_match_the_teacher(tiny_teacher: BertForSequenceClassification, tiny_batch: dict) -> None:
    inputs = {"input_ids": tiny_batch["input_ids"], "attention_mask": tiny_batch["attention_mask"]}
    student = student_from_layers(tiny_teacher, [0, 1]).eval()
    with torch.no_grad():
        t = tiny_teacher.eval()(**inputs, output_hidden_states=True).hidden_states
        s = student(**inputs, output_hidden_states=True).hidden_states
    assert len(s) == 3 and len(t) == 5
    for i in range(3):  # embeddings, layer 0, layer 1 are the teacher's
        torch.testing.assert_close(s[i], t[i], rtol=0, atol=0)
    full = student_from_layers(tiny_teacher, [0, 1, 2, 3])
    torch.testing.assert_close(logits(full, tiny_batch), logits(tiny_teacher, tiny_batch), rtol=0, atol=0)


def test_student_from_layers_saves_and_reloads(
    tiny_teacher: BertForSequenceClassification, tiny_batch: dict, tmp_path: Path
) -> None:
    student = student_from_layers(tiny_teacher, [0, 3])
    student.save_pretrained(tmp_path)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.config.num_hidden_layers == 2
    torch.testing.assert_close(logits(reloaded, tiny_batch), logits(student, tiny_batch))


@pytest.mark.parametrize("layers", [[], [0, 0], [2, 1], [4], [-1], [True, 2], [0.0, 1], [0, 1, 2, 3, 4]])
def test_student_from_layers_rejects_invalid_lists(tiny_teacher: BertForSequenceClassification, layers: list) -> None:
    with pytest.raises(ValueError, match=r"0\.\.3") as info:
        student_from_layers(tiny_teacher, layers)
    assert "4 layers" in str(info.value)


def test_student_from_config(tiny_teacher: BertForSequenceClassification, tiny_batch: dict) -> None:
    tiny_teacher.config.id2label = {0: "neg", 1: "pos"}
    student = student_from_config(tiny_teacher, num_layers=2, hidden_size=32, num_heads=2)
    cfg = student.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 32, 2, 128)
    assert cfg.vocab_size == tiny_teacher.config.vocab_size
    assert cfg.id2label == {0: "neg", 1: "pos"}
    assert len(student.bert.encoder.layer) == 2
    assert logits(student, tiny_batch).shape == (3, 2)
    assert tiny_teacher.config.num_hidden_layers == 4 and tiny_teacher.config.hidden_size == 64

    default = student_from_config(tiny_teacher, num_layers=1)
    assert (default.config.hidden_size, default.config.num_attention_heads) == (64, 4)
    assert default.config.intermediate_size == 256
    assert not torch.equal(  # random initialisation, not a copy
        default.bert.encoder.layer[0].attention.self.query.weight,
        tiny_teacher.bert.encoder.layer[0].attention.self.query.weight,
    )


def test_student_from_config_lists_every_problem(tiny_teacher: BertForSequenceClassification) -> None:
    with pytest.raises(ValueError) as info:
        student_from_config(tiny_teacher, num_layers=0, hidden_size=30)
    assert "num_layers=0" in str(info.value)
    assert "hidden_size=30 is not divisible by num_heads=4" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "found"),
    [
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
        ({"position_embedding_type": "relative_key_query"}, "position_embedding_type='relative_key_query'"),
        ({"rope_theta": 10000.0}, "rotary settings ['rope_theta']"),
    ],
)
def test_position_problem_names_non_absolute_positions(settings, found):
    from transformers import BertConfig

    from helper.models import position_problem

    assert position_problem(BertConfig(), "teacher") is None
    assert position_problem(BertConfig(position_embedding_type="absolute"), "teacher") is None
    message = position_problem(BertConfig(**settings), "student")
    assert message.startswith(f"the student (bert) has {found}")
    assert "only with absolute position embeddings" in message


def test_rotary_families_are_named_whatever_their_config_says():
    from transformers import RoFormerConfig

    from helper.models import position_problem

    assert "model_type='roformer'" in position_problem(RoFormerConfig(), "teacher")
