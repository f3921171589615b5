"""The student network: shapes, padding invariance, single visits, empty code types, label map."""

from __future__ import annotations

import pytest
import torch

from leader.encoding import INPUTS, Encoder
from leader.samples import make_samples
from leader.student.model import Student, StudentConfig
from tests.conftest import MEDS


def tensors(arrays: dict) -> tuple[torch.Tensor, ...]:
    """`Encoder.encode` arrays -> the student's forward arguments, in `INPUTS` order."""
    return tuple(torch.as_tensor(arrays[k]) for k in INPUTS)


def _student(encoder: Encoder, **kw) -> Student:
    v = encoder.vocabs
    cfg = StudentConfig(
        len(v["diagnoses"]),
        len(v["procedures"]),
        len(v["medications"]),
        len(v["profile"]),
        len(encoder.medications),
        dim=16,
        hidden=24,
        heads=2,
        max_visits=encoder.max_visits,
        **kw,
    )
    torch.manual_seed(0)
    return Student(cfg)


@pytest.fixture
def setup(hand_dataset):
    samples = make_samples(hand_dataset)
    encoder = Encoder.fit(samples, hand_dataset.medications)
    return samples, encoder, _student(encoder, teacher_hidden=12).eval()


def test_forward_shapes_and_encode_outputs(setup):
    samples, encoder, model = setup
    batch = tensors(encoder.encode_samples(samples))
    labels = torch.from_numpy(encoder.multi_hot([s.labels for s in samples]))
    out = model.encode(*batch, labels=labels)
    n = len(samples)
    assert out["logits"].shape == (n, len(MEDS))
    assert out["mediator"].shape == (n, 24)
    assert out["profile"].shape == (n, 16)
    assert out["current_meds"].shape == (n, 16)
    assert model.project(out).shape == (n, 12)
    assert out["patient"].shape == (n, 48)
    assert torch.equal(model(*batch), out["logits"])
    assert all(torch.isfinite(t).all() for t in out.values())


def test_padding_does_not_change_a_sample(setup):
    """A sample alone (its own shapes) and inside a batch padded for longer ones: same logits."""
    samples, encoder, model = setup
    together = model(*tensors(encoder.encode_samples(samples))).detach()
    for i, sample in enumerate(samples):
        alone = model(*tensors(encoder.encode_samples([sample]))).detach()
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_empty_code_types_single_visit_and_empty_profile_are_finite(setup):
    _, encoder, model = setup
    visit = {"diagnoses": [], "procedures": [], "medications": []}
    arrays = encoder.encode([{}, {"gender": "F"}], [[visit], [visit, {**visit, "diagnoses": ["ICD9:NEVER"]}]])
    assert arrays["diagnoses"].shape[1] == 2
    logits = model(*tensors(arrays))
    assert torch.isfinite(logits).all()
    model.train()
    loss = model(*tensors(arrays)).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_history_changes_the_prediction(setup):
    """The medication history (and the profile at slot 0) reach the output."""
    samples, encoder, model = setup
    multi = next(s for s in samples if len(s.visits) == 3)
    with_history = model(*tensors(encoder.encode_samples([multi])))
    current_only = model(*tensors(encoder.encode([multi.profile], [multi.visits[-1:]])))
    other_profile = model(*tensors(encoder.encode([{"gender": "M", "age": 20}], [multi.visits])))
    assert not torch.allclose(with_history, current_only)
    assert not torch.allclose(with_history, other_profile)


def test_label_ids_map_labels_to_medication_vocab(setup):
    samples, encoder, model = setup
    med_vocab = encoder.vocabs["medications"]
    model.set_label_map(med_vocab.encode(MEDS))
    labels = torch.from_numpy(encoder.multi_hot([["B01A", "C07A"], [], ["J01C"]]))
    ids = model.label_ids(labels).numpy()
    assert ids.shape == (3, 2)
    assert sorted(ids[0]) == sorted(med_vocab.encode(["B01A", "C07A"]))
    assert list(ids[1]) == [0, 0]
    assert list(ids[2]) == [med_vocab.encode(["J01C"])[0], 0]
    with pytest.raises(ValueError):
        model.set_label_map([2, 3])


def test_config_round_trip_and_checks():
    cfg = StudentConfig(5, 4, 6, 3, 2, dim=8, heads=2, teacher_hidden=7)
    assert StudentConfig.from_dict({**cfg.to_dict(), "ignored": 1}) == cfg
    with pytest.raises(ValueError, match="multiple of heads"):
        StudentConfig(5, 4, 6, 3, 2, dim=10, heads=4)
    assert Student(StudentConfig(5, 4, 6, 3, 2, dim=8, heads=2)).kd_proj is None


def test_parameter_count_of_default_size():
    """ARCHITECTURE.md sizes (d=64, mediator 128) on a 2,000-code vocabulary stay well under a few MB,
    and the vocabularies and labels cost what the design says: one d-vector per code, one
    mediator-wide row and a bias per label. Anything else (encoders, head) does not grow with them."""
    sizes = {"n_diagnoses": 2000, "n_procedures": 500, "n_medications": 300, "n_profile": 60, "n_labels": 150}

    def count(**change) -> int:
        return sum(p.numel() for p in Student(StudentConfig(**{**sizes, **change})).parameters())

    cfg = StudentConfig(**sizes)
    assert (cfg.dim, cfg.hidden) == (64, 128)
    n = count()
    assert 200_000 < n < 1_000_000 and 4 * n < 4_000_000, n  # fp32 bytes
    for vocab in ("n_diagnoses", "n_procedures", "n_medications", "n_profile"):
        assert count(**{vocab: sizes[vocab] + 10}) - n == 10 * cfg.dim, vocab
    assert count(n_labels=160) - n == 10 * (cfg.hidden + 1)


@pytest.mark.parametrize("width,heads", [(16, 2), (48, 4)])
def test_the_exported_layer_equals_the_torch_module(width, heads):
    """`export_layer` (what the ONNX file holds) computes what `nn.TransformerEncoder` computes in
    eval; `encode_layer` runs the module itself outside an export."""
    from leader.student.model import FF_MULT, encode_layer, export_layer

    torch.manual_seed(1)
    layer = torch.nn.TransformerEncoderLayer(width, heads, FF_MULT * width, 0.1, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False).eval()
    x = torch.randn(5, 7, width)
    keep = torch.ones(5, 7)
    keep[0, 3:] = 0  # padding at the end, in the middle, and none
    keep[1, 1:6] = 0
    keep[3, 4] = 0
    want = encoder(x, src_key_padding_mask=keep == 0)
    torch.testing.assert_close(export_layer(encoder, x, keep), want, atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[0, 5] = 100.0  # a padded key changes nothing real
    torch.testing.assert_close(export_layer(encoder, changed, keep)[0, :3], want[0, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encode_layer(encoder, x, keep), want)
    encoder.train()  # training runs the module itself, with its dropouts
    torch.manual_seed(2)
    a = encode_layer(encoder, x, keep)
    torch.manual_seed(2)
    torch.testing.assert_close(a, encoder(x, src_key_padding_mask=keep == 0))
