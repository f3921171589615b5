"""The student's note encoder: it reaches the output through the current visit only, padding and
batching do not change a sample, and a student without one is the model of earlier versions."""

from __future__ import annotations

import pytest
import torch

from leader.encoding import INPUTS, Encoder
from leader.samples import make_samples
from leader.student.model import Student, StudentConfig, current_visit


def tensors(arrays: dict) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(arrays[k]) for k in INPUTS)


def _student(encoder: Encoder) -> Student:
    v = encoder.vocabs
    sizes = [len(v[k]) for k in ("diagnoses", "procedures", "medications", "profile")] + [len(encoder.medications)]
    notes = len(v["notes"]) if encoder.reads_notes else 0
    torch.manual_seed(0)
    return Student(StudentConfig(*sizes, dim=16, hidden=24, heads=2, n_notes=notes)).eval()


@pytest.fixture
def setup(hand_dataset):
    samples = make_samples(hand_dataset)
    encoder = Encoder.fit(samples, hand_dataset.medications, min_patients=1, max_note_tokens=32)
    return samples, encoder, _student(encoder)


def test_current_visit_is_the_last_real_slot():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    assert current_visit(mask).tolist() == [[0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_the_note_changes_the_prediction_and_only_its_known_words_count(setup):
    samples, encoder, model = setup
    noted = next(s for s in samples if s.current.get("note"))
    visits = noted.visits
    with_note = model(*tensors(encoder.encode([noted.profile], [visits])))
    without = model(*tensors(encoder.encode([noted.profile], [[{**visits[-1], "note": None}]])))
    assert not torch.allclose(with_note, without)
    other = {**visits[-1], "note": {**visits[-1]["note"], "history_of_present_illness": "zzz unseen words"}}
    rest = {**visits[-1]["note"], "history_of_present_illness": ""}
    torch.testing.assert_close(
        model(*tensors(encoder.encode([noted.profile], [[other]]))),
        model(*tensors(encoder.encode([noted.profile], [[{**visits[-1], "note": rest}]]))),
    )  # words outside the vocabulary are no input


def test_padding_and_batching_do_not_change_a_sample_with_a_note(setup):
    samples, encoder, model = setup
    together = model(*tensors(encoder.encode_samples(samples))).detach()
    assert encoder.encode_samples(samples)["notes"].shape[1] > 1  # a note among note-less samples
    for i, sample in enumerate(samples):
        alone = model(*tensors(encoder.encode_samples([sample]))).detach()
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_a_student_without_note_encoder_is_the_earlier_model(setup):
    samples, _, _ = setup
    encoder = Encoder.fit(samples, ["C07A", "J01C"], min_patients=1)
    model = _student(encoder)
    assert model.note_encoder is None and not any(k.startswith("note") for k in model.state_dict())
    arrays = encoder.encode_samples(samples)
    noisy = {**arrays, "notes": arrays["notes"] + 3}
    torch.testing.assert_close(model(*tensors(arrays)), model(*tensors(noisy)))  # `notes` is ignored
    old = {k: v for k, v in model.cfg.to_dict().items() if k != "n_notes"}  # a config.json of earlier versions
    assert StudentConfig.from_dict(old) == model.cfg and model.cfg.n_notes == 0
    with pytest.raises(ValueError, match="n_notes"):
        StudentConfig.from_dict({**old, "n_notes": -1})


def test_a_note_student_refuses_to_run_without_notes(setup):
    samples, encoder, model = setup
    arrays = encoder.encode_samples(samples)
    with pytest.raises(ValueError, match="reads notes"):
        model(*(torch.as_tensor(arrays[k]) for k in INPUTS[:5]))
    with_notes = sum(p.numel() for p in model.parameters())
    without = sum(p.numel() for p in _student(Encoder.fit(samples, encoder.medications, min_patients=1)).parameters())
    d = model.cfg.dim
    words, labels = len(encoder.vocabs["notes"]), len(encoder.medications)
    assert with_notes - without == words * d + d * 3 * d + 3 * d + words * labels  # embedding, linear, word weights


def test_a_word_weight_adds_to_its_label_logit_exactly(setup):
    """The note's direct path is a bag-of-words linear term: raising one word's weight for one
    label moves that logit by the weight for notes holding the word, and nothing else."""
    samples, encoder, model = setup
    arrays = encoder.encode_samples(samples)
    word = int(arrays["notes"][arrays["notes"] > 0][0])
    before = model(*tensors(arrays)).detach()
    with torch.no_grad():
        model.note_encoder.words.weight[word, 1] += 1.5
    shift = model(*tensors(arrays)).detach() - before
    holds = torch.as_tensor((arrays["notes"] == word).any(1), dtype=torch.float32)
    want = torch.zeros_like(shift)
    want[:, 1] = 1.5 * holds
    assert holds.sum() >= 1 and holds.sum() < len(samples)
    torch.testing.assert_close(shift, want, atol=1e-5, rtol=0)


def test_pad_rows_stay_zero_in_training_and_are_zeroed_on_load(setup, tmp_path):
    """The note and profile bags sum without a mask: they rely on the pad rows being zero."""
    from safetensors.torch import save_file

    from leader.encoding import PAD
    from leader.student.io import load_weights

    samples, encoder, model = setup
    torch.nn.init.normal_(model.note_encoder.words.weight)  # as after training: words carry weight
    model.zero_pad_rows()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.01)  # as `leader distill`
    arrays = tensors(encoder.encode_samples(samples))
    for _ in range(3):
        optimizer.zero_grad()
        model(*arrays).square().mean().backward()
        optimizer.step()
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.padding_idx == PAD]
    assert len(tables) == 6 and all(t.weight[PAD].abs().max() == 0 for t in tables)
    model.eval()
    want = model(*arrays).detach()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["note_encoder.words.weight"][PAD] = 5.0  # a checkpoint whose pad row is not zero
    state["profile_encoder.embedding.weight"][PAD] = 5.0
    save_file(state, tmp_path / "model.safetensors")
    fresh = _student(encoder)
    load_weights(fresh, tmp_path / "model.safetensors")
    torch.testing.assert_close(fresh.eval()(*arrays), want)  # padding still counts for nothing
