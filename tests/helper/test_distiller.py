"""Distillers: hook-fed losses equal eager references, freezing per stage, teacher isolation, validation, export."""

from __future__ import annotations

import copy
import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from transformers import AutoModelForSequenceClassification

from adaptors import ADAPTORS, build_adaptors
from data.data_module import ClfDataModule
from helper.distiller import BaseDistiller, InterDistiller, PredDistiller, make_student
from helper.finetuner import HgCkptIO
from tests.adaptors.helpers import dims, run_model
from tests.tiny import pad_batch, tiny_bert
from tests.tiny import quick_trainer as tiny_quick_trainer

INTER = [
    "AttnMiniLM",
    "ValMiniLM",
    "RelMiniLMv2",
    "AttnTinyBERT",
    "AttnCE",
    "HidnTinyBERT",
    "EmbdTinyBERT",
    "HidnPKD",
    "HidnCos",
]
LOGIT = ["LogitKD", "LogitCE", "LogitMSE"]


#: The shared test trainer, with Lightning's sanity check (these tests always ran it).
quick_trainer = partial(tiny_quick_trainer, num_sanity_val_steps=2)


@pytest.fixture
def dm(toy_dataset, minilm_path) -> ClfDataModule:
    return ClfDataModule(toy_dataset, tokenizer=minilm_path, batch_size=8)


@pytest.fixture
def student4():
    """2 layers, width 32, 4 heads: the teacher's head count, as AttnTinyBERT requires."""
    return tiny_bert(layers=2, hidden=32, heads=4, seed=3)


@pytest.fixture
def batch(dm) -> dict[str, torch.Tensor]:
    return next(iter(dm.train_dataloader()))


def test_public_api_snippet(tmp_path, dm, tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["AttnMiniLM", "ValMiniLM", "LogitMSE"], dm)
    trainer = Trainer(
        max_epochs=1,
        plugins=[HgCkptIO()],
        callbacks=[ModelCheckpoint(monitor="val_loss", mode="min", dirpath=tmp_path)],
        logger=False,
        enable_progress_bar=False,
    )
    trainer.fit(distiller, dm)
    folder = trainer.checkpoint_callback.best_model_path
    exported = AutoModelForSequenceClassification.from_pretrained(folder)
    assert exported.config.num_hidden_layers == 2 and exported.config.hidden_size == 32
    assert exported.config.id2label == {0: "negative", 1: "positive"}
    for key in ("train_distill_AttnMiniLM", "train_distill_ValMiniLM", "train_distill_LogitMSE", "train_loss", "lr"):
        assert key in trainer.callback_metrics
    for key in ("val_loss", "val_acc", "val_f1", "val_f1_negative", "teacher_val_acc", "val_distill_loss"):
        assert key in trainer.callback_metrics


def test_hook_losses_equal_eager_references(tiny_teacher, student4, batch):
    """Losses fed by hooks on SDPA models equal the same adaptors fed from eager output_attentions/hidden_states."""
    distiller = BaseDistiller(tiny_teacher, student4, INTER + LOGIT, alpha=0.0).eval()
    assert tiny_teacher.config._attn_implementation == "sdpa"
    with torch.no_grad():
        losses, _, _ = distiller.distill(batch)
    eager_t = copy.deepcopy(tiny_teacher).eval()
    eager_t.set_attn_implementation("eager")
    eager_s = copy.deepcopy(distiller.student).eval()
    eager_s.set_attn_implementation("eager")
    for adaptor, layer_map in zip(distiller.adaptors, distiller.layer_maps, strict=True):
        t_layers = [t for _, t in layer_map] or [0]
        s_layers = [s for s, _ in layer_map] or [0]
        with torch.no_grad():
            t = run_model(eager_t, batch, t_layers).taps
            s = run_model(eager_s, batch, s_layers).taps
            expected = adaptor(t, s)
        torch.testing.assert_close(losses[adaptor.name], expected, rtol=1e-4, atol=1e-5, msg=adaptor.name)


def test_default_layer_maps(tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["AttnMiniLM", "HidnTinyBERT", "LogitKD", "EmbdTinyBERT"])
    maps = dict(zip([a.name for a in distiller.adaptors], distiller.layer_maps, strict=True))
    assert maps["AttnMiniLM"] == [(1, 3)]  # MiniLM: last layer
    assert maps["HidnTinyBERT"] == [(0, 1), (1, 3)]  # TinyBERT: uniform 4 -> 2
    assert maps["LogitKD"] == [] and maps["EmbdTinyBERT"] == []
    pkd = BaseDistiller(tiny_teacher, tiny_student, ["HidnPKD", "HidnCos", "RelMiniLMv2"])
    maps = dict(zip([a.name for a in pkd.adaptors], pkd.layer_maps, strict=True))
    assert maps["HidnPKD"] == [(0, 1)]  # Patient KD: uniform without the last student layer
    assert maps["HidnCos"] == [(1, 3)] and maps["RelMiniLMv2"] == [(1, 3)]
    chosen = BaseDistiller(tiny_teacher, tiny_student, [{"name": "RelMiniLMv2", "teacher_layer": 2}])
    assert chosen.layer_maps == [[(1, 2)]]  # MiniLMv2: the user's teacher layer into the last student layer
    assert chosen.t_taps.needs == {"queries", "keys", "values"} and chosen.t_taps.layers == (2,)
    explicit = BaseDistiller(tiny_teacher, tiny_student, [{"name": "HidnTinyBERT", "layers": [[0, 0], [1, 2]]}])
    assert explicit.layer_maps == [[(0, 0), (1, 2)]]


def test_zero_loss_for_a_copy_of_the_teacher(tiny_teacher, batch):
    student = copy.deepcopy(tiny_teacher)
    names = [n for n in INTER if n != "AttnCE"] + ["LogitKD", "LogitMSE"]  # cross-entropies bottom out above 0
    distiller = BaseDistiller(tiny_teacher, student, names, alpha=0.0).eval()
    with torch.no_grad():
        losses, _, _ = distiller.distill(batch)
    for name in names:
        assert losses[name].abs().item() < 1e-5, name


def test_gradients_reach_only_student_and_projections(tiny_teacher, student4, batch):
    distiller = BaseDistiller(tiny_teacher, student4, INTER + LOGIT, alpha=0.5)
    losses, s_logits, _ = distiller.distill(batch)
    distiller.total_loss(losses, s_logits, batch["labels"])["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())
    assert distiller.student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    projections = [a.proj for a in distiller.adaptors if getattr(a, "proj", None) is not None]
    assert projections and all(p.weight.grad is not None and p.weight.grad.abs().sum() > 0 for p in projections)


def test_teacher_stays_in_eval_mode_and_frozen(tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"])
    distiller.train()
    assert not distiller.teacher.training and distiller.student.training
    assert not any(p.requires_grad for p in distiller.teacher.parameters())


def _eval_mode_warnings(distiller: BaseDistiller, dm: ClfDataModule) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quick_trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0).fit(distiller, dm)
    return [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]


def test_eval_mode_warning_is_silenced_for_the_teacher_only(dm, tiny_teacher, tiny_student):
    quiet = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm, cache_teacher_outputs=False)
    assert _eval_mode_warnings(quiet, dm) == []
    assert not warnings.filters or all("in eval mode" not in str(f[1]) for f in warnings.filters)  # filter removed
    stray = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm, cache_teacher_outputs=False)
    stray.student.dropout.eval()  # a student module left in eval mode is reported, teacher modules included
    teacher_modules = len(list(stray.teacher.modules()))
    assert _eval_mode_warnings(stray, dm) == [
        f"Found {teacher_modules + 1} module(s) in eval mode at the start of training. This may lead to unexpected "
        "behavior during training. If this is intentional, you can ignore this warning."
    ]


def test_padding_does_not_change_losses(tiny_teacher, student4, batch):
    distiller = BaseDistiller(tiny_teacher, student4, INTER + LOGIT).eval()
    with torch.no_grad():
        plain, _, _ = distiller.distill(batch)
        padded, _, _ = distiller.distill(pad_batch(batch, 5))
    for name, value in plain.items():
        torch.testing.assert_close(padded[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_only_needed_taps_are_captured(tiny_teacher, tiny_student):
    logit_only = BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"])
    assert logit_only.t_taps is None and logit_only.s_taps is None
    hidden_only = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT"])
    assert hidden_only.t_taps.needs == {"hidden"} and hidden_only.t_taps.layers == (1, 3)
    assert hidden_only.s_taps.layers == (0, 1)


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def test_two_step_freezing(dm, tiny_teacher):
    student = make_student({"layers": [0, 3]}, tiny_teacher, dm)
    head = {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}

    step1 = InterDistiller(tiny_teacher, student, ["AttnMiniLM", "HidnTinyBERT"], dm)
    before = {n: p.detach().clone() for n, p in step1.student.named_parameters()}
    quick_trainer().fit(step1, dm)
    changed = _changed(before, step1.student)
    assert changed and not changed & head
    assert any(".encoder.layer." in n for n in changed)

    step1.remove_taps()
    step2 = PredDistiller(tiny_teacher, step1.student, ["LogitKD"], dm, alpha=0.5, lr=1e-3)
    before = {n: p.detach().clone() for n, p in step2.student.named_parameters()}
    quick_trainer().fit(step2, dm)
    assert _changed(before, step2.student) == head


def test_stage_adaptor_kinds_are_checked(tiny_teacher, tiny_student):
    with pytest.raises(ValueError, match=r"InterDistiller.*accepts inter adaptors; got \['LogitKD'\]"):
        InterDistiller(tiny_teacher, tiny_student, ["AttnMiniLM", "LogitKD"])
    with pytest.raises(ValueError, match=r"PredDistiller.*accepts logit adaptors; got \['HidnTinyBERT'\]"):
        PredDistiller(tiny_teacher, tiny_student, ["LogitKD", "HidnTinyBERT"])
    with pytest.raises(ValueError, match="alpha=0.5: InterDistiller trains intermediate layers only"):
        InterDistiller(tiny_teacher, tiny_student, ["AttnMiniLM"], alpha=0.5)


def test_bad_settings_reported_together(tiny_teacher, tiny_student):
    with pytest.raises(ValueError) as err:
        BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], alpha=1.5, temperature=0, lr=-1)
    message = str(err.value)
    assert "alpha=1.5: expected a number in [0, 1]" in message
    assert "temperature=0: expected a number > 0" in message
    assert "lr=-1: expected a number > 0" in message


def test_unknown_adaptor_lists_valid_names(tiny_teacher, tiny_student):
    with pytest.raises(ValueError) as err:
        BaseDistiller(tiny_teacher, tiny_student, ["AttnMiniLm"])
    assert "AttnMiniLM" in str(err.value)
    for name in ADAPTORS:
        assert name in str(err.value)


def test_label_and_vocabulary_mismatch(dm, tiny_teacher):
    three_labels = tiny_bert(layers=2, hidden=32, heads=2, num_labels=3)
    with pytest.raises(ValueError, match="num_labels=3 but the data has 2 classes"):
        BaseDistiller(tiny_teacher, three_labels, ["LogitKD"], dm)
    other_vocab = tiny_bert(layers=2, hidden=32, heads=2, vocab_size=1000)
    with pytest.raises(ValueError, match="vocab_size=1000 differs from the teacher's 30522"):
        BaseDistiller(tiny_teacher, other_vocab, ["LogitKD"])


def test_layer_map_out_of_range(tiny_teacher, tiny_student):
    with pytest.raises(ValueError, match=r"adaptors\[HidnTinyBERT\]\.layers"):
        BaseDistiller(tiny_teacher, tiny_student, [{"name": "HidnTinyBERT", "layers": [[0, 9]]}])


def test_projection_off_with_different_widths(tiny_teacher, tiny_student):
    with pytest.raises(ValueError, match="projection"):
        BaseDistiller(tiny_teacher, tiny_student, [{"name": "HidnTinyBERT", "projection": False}])


def test_teacher_path_errors(tmp_path, tiny_student):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BaseDistiller(str(tmp_path / "missing"), tiny_student, ["LogitKD"])
    encoder_only = tmp_path / "encoder"
    tiny_bert().bert.save_pretrained(encoder_only)
    with pytest.raises(ValueError, match="not a sequence classifier"):
        BaseDistiller(str(encoder_only), tiny_student, ["LogitKD"])


def test_students_from_recipes(dm, tiny_teacher):
    cut = make_student({"layers": [1, 3]}, tiny_teacher, dm)
    assert cut.config.num_hidden_layers == 2
    torch.testing.assert_close(
        cut.bert.encoder.layer[1].output.dense.weight, tiny_teacher.bert.encoder.layer[3].output.dense.weight
    )
    small = make_student({"num_layers": 1, "hidden_size": 16, "num_heads": 2}, tiny_teacher, dm)
    assert (small.config.num_hidden_layers, small.config.hidden_size) == (1, 16)
    with pytest.raises(ValueError, match="unknown key"):
        make_student({"depth": 2}, tiny_teacher, dm)


def test_checkpoint_excludes_teacher_and_resumes(tmp_path, dm, tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT", "LogitKD"], dm)
    trainer = quick_trainer(
        plugins=[HgCkptIO()], callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], enable_checkpointing=True
    )
    trainer.fit(distiller, dm)
    folder = tmp_path / "last.ckpt"
    state = HgCkptIO().load_checkpoint(folder)
    assert not any(k.startswith("teacher.") for k in state["state_dict"])
    assert any(k.startswith("adaptors.") and "proj" in k for k in state["state_dict"])  # projections resume
    exported = AutoModelForSequenceClassification.from_pretrained(folder)
    assert not any("proj" in k for k in exported.state_dict())
    resumed = BaseDistiller(
        tiny_teacher, tiny_bert(layers=2, hidden=32, heads=2, seed=7), ["HidnTinyBERT", "LogitKD"], dm
    )
    trainer2 = quick_trainer(max_steps=4, plugins=[HgCkptIO()])
    trainer2.fit(resumed, dm, ckpt_path=str(folder))
    assert trainer2.global_step == 4


def test_adaptor_instances_are_accepted(tiny_teacher, tiny_student):
    built = build_adaptors(["LogitKD"], dims(tiny_teacher), dims(tiny_student), defaults={"temperature": 2.0})
    distiller = BaseDistiller(tiny_teacher, tiny_student, built)
    assert distiller.adaptors[0] is built[0] and distiller.adaptors[0].temperature == 2.0


# ---------------------------------------------------------------------------------------------- teacher-output cache
def _fit_student(dm, teacher, cache: bool) -> tuple[BaseDistiller, dict[str, torch.Tensor]]:
    pl_seed = 0
    torch.manual_seed(pl_seed)
    distiller = BaseDistiller(
        teacher, make_student({"layers": [1, 3]}, teacher, dm), ["LogitKD"], dm, cache_teacher_outputs=cache
    )
    quick_trainer(max_steps=3, limit_val_batches=None).fit(distiller, dm)
    return distiller, {k: v.clone() for k, v in distiller.student.state_dict().items()}


def test_cached_teacher_logits_train_the_same_student(tmp_path, monkeypatch, dm, tiny_teacher):
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    cached, with_cache = _fit_student(dm, tiny_teacher, cache=True)
    assert cached.use_teacher_cache and "teacher_logits" in dm.tokenized["train"].column_names
    assert len(list((tmp_path / "teacher_logits").glob("*.pt"))) == 1  # one store per teacher
    plain, without_cache = _fit_student(dm, tiny_teacher, cache=False)
    assert not plain.use_teacher_cache
    for name, value in with_cache.items():
        torch.testing.assert_close(without_cache[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_cache_matches_teacher_and_is_invalidated(tmp_path, monkeypatch, dm, tiny_teacher):
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    dm.add_teacher_logits(tiny_teacher)
    first = dm.tokenized["validation"][:]["teacher_logits"]
    with torch.no_grad():
        for i in range(len(dm.tokenized["validation"])):
            row = dm.tokenized["validation"][i]
            inputs = {k: row[k][None] for k in ("input_ids", "attention_mask", "token_type_ids")}
            torch.testing.assert_close(tiny_teacher(**inputs).logits[0], first[i], rtol=1e-4, atol=1e-5)
    calls = []
    monkeypatch.setattr(type(tiny_teacher), "forward", lambda *a, **k: calls.append(1) or pytest.fail("recomputed"))
    fresh = ClfDataModule(dm.raw, tokenizer=dm.tokenizer, batch_size=8)
    fresh.add_teacher_logits(tiny_teacher)  # same teacher and data: read from disk, the teacher is not run
    torch.testing.assert_close(fresh.tokenized["validation"][:]["teacher_logits"], first)
    monkeypatch.undo()
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    with torch.no_grad():
        tiny_teacher.classifier.weight.add_(1.0)  # a changed teacher must not reuse the old logits
    fresh.add_teacher_logits(tiny_teacher)
    assert not torch.allclose(fresh.tokenized["validation"][:]["teacher_logits"], first)
    changed = fresh.tokenized["validation"][:]["teacher_logits"]
    shorter = ClfDataModule(dm.raw, tokenizer=dm.tokenizer, batch_size=8, max_length=4)
    shorter.add_teacher_logits(tiny_teacher)  # a different max_length gives other tokens, so other logits
    short = shorter.tokenized["validation"][:]["teacher_logits"]
    with torch.no_grad():
        row = shorter.tokenized["validation"][0]
        inputs = {k: row[k][None] for k in ("input_ids", "attention_mask", "token_type_ids")}
        torch.testing.assert_close(tiny_teacher(**inputs).logits[0], short[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(short, changed)
    assert len(list((tmp_path / "teacher_logits").glob("*.pt"))) == 2  # the original and the changed teacher


def test_cache_is_not_used_when_adaptors_need_more_than_logits(dm, tiny_teacher, tiny_student):
    distiller = BaseDistiller(tiny_teacher, tiny_student, ["HidnTinyBERT", "LogitKD"], dm)
    quick_trainer(max_steps=1).fit(distiller, dm)
    assert not distiller.use_teacher_cache


def test_student_alone_labels_only_evaluation_splits_and_trains_without_the_teacher(
    tmp_path, monkeypatch, dm, tiny_teacher
):
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    alone = BaseDistiller(tiny_teacher, make_student({"layers": [1, 3]}, tiny_teacher, dm), [], dm, alpha=1.0)

    class TeacherMustNotRun(Callback):  # validation reads the teacher's cached logits, training needs none
        def on_train_start(self, trainer, pl_module):
            monkeypatch.setattr(tiny_teacher, "forward", lambda *a, **k: pytest.fail("the teacher ran"))

    trainer = quick_trainer(max_steps=3, limit_val_batches=None, val_check_interval=3, callbacks=[TeacherMustNotRun()])
    trainer.fit(alone, dm)
    monkeypatch.undo()
    assert "teacher_logits" not in dm.tokenized["train"].column_names and "train" not in dm.label_stats
    assert "teacher_logits" in dm.tokenized["validation"].column_names and "teacher_val_acc" in trainer.callback_metrics
    validation = dm.label_stats["validation"]
    monkeypatch.setenv("DISTILLER_CACHE", str(tmp_path))
    dm.add_teacher_logits(tiny_teacher)  # later asked for every split: only the missing one is labelled
    assert "teacher_logits" in dm.tokenized["train"].column_names and dm.label_stats["validation"] is validation


# ---------------------------------------------------------------------------------------------- positions, families
def test_relative_positions_are_refused_for_attention_losses(tiny_student):
    teacher = tiny_bert(layers=4, hidden=64, heads=4)
    teacher.config.position_embedding_type = "relative_key"
    with pytest.raises(ValueError) as info:
        BaseDistiller(teacher, tiny_student, ["AttnMiniLM", "LogitKD"])
    message = str(info.value)
    assert "teacher (bert) has position_embedding_type='relative_key'" in message
    assert "only with absolute position embeddings" in message
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        BaseDistiller(teacher, tiny_student, ["LogitKD"], attention_maps=True)
    BaseDistiller(teacher, tiny_student, ["HidnTinyBERT", "LogitKD"])  # hidden states do not depend on it


def _tiny_camembert(layers: int = 4):
    from transformers import CamembertConfig, CamembertForSequenceClassification

    torch.manual_seed(0)
    config = CamembertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
        num_labels=2,
    )
    return CamembertForSequenceClassification(config).eval()


def test_camembert_is_distilled_like_roberta(batch):
    teacher = _tiny_camembert()
    names = ["AttnMiniLM", "HidnTinyBERT", "EmbdTinyBERT", "LogitKD"]
    distiller = BaseDistiller(teacher, {"layers": [1, 3]}, names).eval()
    inputs = {k: v for k, v in batch.items() if k != "token_type_ids"}
    with torch.no_grad():
        losses, _, _ = distiller.distill(inputs)
    assert set(losses) == {"AttnMiniLM", "HidnTinyBERT", "EmbdTinyBERT", "LogitKD"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["EmbdTinyBERT"].item() < 1e-6  # the cut student shares the teacher's embeddings
    assert losses["HidnTinyBERT"].item() > 0


# ---------------------------------------------------------------------------------------------- mixed precision
def test_bf16_mixed_run_on_cpu_keeps_adaptor_losses_in_float32(dm, tiny_teacher, student4):
    adaptors = ["AttnMiniLM", "AttnTinyBERT", "HidnTinyBERT", "HidnPKD", "LogitKD"]
    distiller = BaseDistiller(tiny_teacher, student4, adaptors, dm, alpha=0.5)
    seen: list[tuple[str, torch.dtype, torch.dtype, bool]] = []
    original = distiller.adaptor_losses

    def recording(t_raw, t_logits, s_raw, s_logits, mask):
        losses = original(t_raw, t_logits, s_raw, s_logits, mask)
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        seen.extend((name, value.dtype, s_logits.dtype, autocast) for name, value in losses.items())
        return losses

    distiller.adaptor_losses = recording
    trainer = quick_trainer(max_steps=3, precision="bf16-mixed", accelerator="cpu")
    trainer.fit(distiller, dm)
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["train_loss"])
    training = [s for s in seen if s[3]]
    assert training, "no step ran under bf16 autocast"
    assert {s[2] for s in training} == {torch.bfloat16}  # the models really ran in bf16
    assert {s[1] for s in training} == {torch.float32}, sorted({(s[0], s[1]) for s in training})


# ---------------------------------------------------------------------------------------------- projections, totals
def test_projection_lives_in_the_adaptor_and_trains_but_never_enters_the_student(tmp_path, dm, tiny_teacher):
    student = tiny_bert(layers=2, hidden=32, heads=2, seed=1)
    fresh_keys = set(type(student)(student.config).state_dict())
    distiller = BaseDistiller(tiny_teacher, student, ["HidnTinyBERT"], dm, lr=1e-2)
    proj = distiller.adaptors[0].proj
    assert (proj.in_features, proj.out_features) == (32, 64)
    before = proj.weight.detach().clone()
    trainer = quick_trainer(
        plugins=[HgCkptIO()], callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], enable_checkpointing=True
    )
    trainer.fit(distiller, dm)
    assert not torch.equal(proj.weight, before)  # the optimizer trained it
    assert set(distiller.student.state_dict()) == fresh_keys  # nothing was added to the student
    assert all(p is not proj.weight and p is not proj.bias for p in distiller.student.parameters())
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "last.ckpt")
    assert set(exported.state_dict()) == fresh_keys
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(value, distiller.student.state_dict()[name], msg=name)


def test_mix_step_total_weights_each_adaptor_and_alpha(tiny_teacher, tiny_student, batch):
    spec = [{"name": "HidnTinyBERT", "weight": 0.25}, {"name": "LogitKD", "weight": 4.0}]
    distiller = BaseDistiller(tiny_teacher, tiny_student, spec, alpha=0.3).eval()
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    parts = distiller.total_loss({"HidnTinyBERT": torch.tensor(2.0), "LogitKD": torch.tensor(3.0)}, logits, labels)
    ce = F.cross_entropy(logits, labels)
    assert parts["distill_loss"].item() == pytest.approx(0.25 * 2.0 + 4.0 * 3.0)
    assert parts["ce"].item() == pytest.approx(ce.item())
    assert parts["loss"].item() == pytest.approx(0.25 * 2.0 + 4.0 * 3.0 + 0.3 * ce.item())
    # The same on a real batch, with each adaptor called on its own.
    with torch.no_grad():
        losses, s_logits, t_logits = distiller.distill(batch)
        hidden = distiller.adaptors[0](*_taps_of(distiller, batch, 0))
        kd = distiller.adaptors[1](*_taps_of(distiller, batch, 1))
    total = distiller.total_loss(losses, s_logits, batch["labels"])["loss"]
    expected = 0.25 * hidden + 4.0 * kd + 0.3 * F.cross_entropy(s_logits, batch["labels"])
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)


def _taps_of(distiller: BaseDistiller, batch: dict[str, torch.Tensor], index: int):
    """Teacher and student taps of adaptor ``index`` from eager copies of the models (not the distiller's hooks)."""
    layer_map = distiller.layer_maps[index]
    taps = []
    for model, layers in (
        (distiller.teacher, [t for _, t in layer_map]),
        (distiller.student, [s for s, _ in layer_map]),
    ):
        eager = copy.deepcopy(model).eval()
        eager.set_attn_implementation("eager")
        taps.append(run_model(eager, batch, layers or [0]).taps)
    return taps


def test_teacher_class_names_must_match_the_data(dm, tiny_teacher, tiny_student):
    """A teacher trained on named classes is refused when the data names them in another order (swapped classes)."""
    tiny_teacher.config.id2label = {0: "positive", 1: "negative"}
    with pytest.raises(ValueError) as error:
        BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm)
    message = str(error.value)
    assert "['positive', 'negative']" in message and "['negative', 'positive']" in message
    assert """--data.label_names '["positive", "negative"]'""" in message
    tiny_teacher.config.id2label = {0: "negative", 1: "positive"}  # same names, same order: accepted
    BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm)
    tiny_teacher.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}  # a teacher without names: nothing to compare
    BaseDistiller(tiny_teacher, tiny_student, ["LogitKD"], dm)
