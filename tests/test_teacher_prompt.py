"""Golden prompts on the hand-written patients, and truncation to the token budget."""

from __future__ import annotations

import pytest

from leader.samples import make_samples
from leader.teacher.prompt import PromptSettings, TokenCounter, profile_sentence, render


class WordCounter:
    """One token per whitespace-separated word: makes budgets easy to reason about."""

    def count(self, text: str) -> int:
        return len(text.split())

    def cut(self, text: str, n: int) -> str:
        return " ".join(text.split()[:n])


@pytest.fixture
def samples(hand_dataset):
    return {s.sample_id: s for s in make_samples(hand_dataset)}


def test_single_visit_with_note_golden(samples, hand_dataset):
    assert render(samples["0:0"], hand_dataset.titles) == (
        "Patient: male, 72 years old, insurance Medicare, admission type EMERGENCY.\n"
        "Previous visits: none.\n"
        "Current visit: diagnoses: Pneumonia, organism unspecified; Unspecified essential hypertension; "
        "procedures: Venous catheterization, not elsewhere classified.\n"
        "History of present illness: 72 year old man with cough and fever for three days.\n"
        "Past medical history: Hypertension. Hyperlipidemia.\n"
        "Allergies: Penicillins\n"
        "Medications on admission: metoprolol 25 mg daily; atorvastatin 40 mg\n"
        "Medications to prescribe:"
    )


def test_history_lines_carry_their_own_visits(samples, hand_dataset):
    """p2's third visit: each earlier visit shows its own diagnoses, procedures and drugs
    (LEADER's released template would repeat the current visit's diagnoses there)."""
    assert render(samples["1:2"], hand_dataset.titles) == (
        "Patient: female, 55 years old, insurance Private.\n"
        "Previous visits: 2.\n"
        "Visit 1 of 2: diagnoses: Diabetes mellitus without mention of complication, type II; procedures: none; "
        "medications: blood glucose lowering drugs, excl. insulins.\n"
        "Visit 2 of 2: diagnoses: Diabetes mellitus without mention of complication, type II; "
        "Other and unspecified hyperlipidemia; procedures: Transfusion of packed cells; "
        "medications: blood glucose lowering drugs, excl. insulins; lipid modifying agents, plain.\n"
        "Current visit: diagnoses: Atrial fibrillation; procedures: none.\n"
        "Medications to prescribe:"
    )


def test_current_visit_medications_never_leak(samples, hand_dataset):
    """The answer (the current visit's drugs) is not in the prompt; earlier visits' drugs are."""
    text = render(samples["1:2"], hand_dataset.titles)
    assert "antithrombotic" not in text and "beta blocking" not in text
    assert "lipid modifying agents" in text


def test_profile_sentence_edge_cases():
    assert profile_sentence({"gender": "F", "age": 300}) == "Patient: female, aged 90 or over."
    assert profile_sentence({}) == "Patient: no profile recorded."
    # identifiers and unknown keys never reach the prompt
    assert "12345" not in profile_sentence({"gender": "M", "subject_id": "12345", "age": "n/a"})


def test_unknown_codes_fall_back_to_the_code(samples):
    text = render(samples["3:1"], {})
    assert "diagnoses: ICD10:I10; ICD9:4019;" in text


def test_more_than_three_earlier_visits_keeps_the_newest(hand_dataset):
    base = make_samples(hand_dataset)[1]  # a visit of p2
    visit = dict(base.visits[0])
    visits = [dict(visit, diagnoses=[f"ICD9:{k}"]) for k in range(5)] + [base.visits[-1]]
    sample = type(base)("x", base.profile, visits, [])
    text = render(sample, {})
    assert "Previous visits: 5." in text
    assert "Visit 1 of 5" not in text and "Visit 2 of 5" not in text
    assert "Visit 3 of 5: diagnoses: ICD9:2;" in text and "Visit 5 of 5: diagnoses: ICD9:4;" in text


def test_truncation_drops_oldest_history_first(samples, hand_dataset):
    counter = WordCounter()
    full = render(samples["1:2"], hand_dataset.titles)
    first_line = full.splitlines()[2]
    budget = counter.count(full) - 1
    cut = render(samples["1:2"], hand_dataset.titles, PromptSettings(max_tokens=budget), counter)
    assert first_line not in cut and "Visit 2 of 2" in cut
    assert "Previous visits: 2." in cut  # the count line still tells the truth
    tiny = render(samples["1:2"], hand_dataset.titles, PromptSettings(max_tokens=16), counter)
    assert "Visit " not in tiny and "Current visit: diagnoses: Atrial fibrillation" in tiny  # never the current visit


def test_truncation_shortens_the_note_after_history(samples, hand_dataset):
    counter = WordCounter()
    full = render(samples["0:0"], hand_dataset.titles)
    budget = counter.count(full) - 6
    cut = render(samples["0:0"], hand_dataset.titles, PromptSettings(max_tokens=budget), counter)
    assert counter.count(cut) <= budget
    assert "Current visit: diagnoses: Pneumonia, organism unspecified; Unspecified essential hypertension;" in cut
    # the longest sections are cut first (history of present illness), short ones stay whole
    assert "Allergies: Penicillins" in cut
    assert "History of present illness: 72 year old man" in cut and "three days." not in cut
    assert cut.endswith("Medications to prescribe:")
    # a budget that leaves no room for any note drops the note entirely
    bare = render(samples["0:0"], hand_dataset.titles, PromptSettings(max_tokens=30), counter)
    assert "Allergies" not in bare and "Current visit" in bare


def test_notes_can_be_switched_off(samples, hand_dataset):
    assert "Allergies" not in render(samples["0:0"], hand_dataset.titles, PromptSettings(notes=False))


@pytest.mark.slow
def test_truncation_with_a_real_tokenizer(samples, hand_dataset, tmp_path):
    from transformers import AutoTokenizer

    from leader.teacher.tiny import make_tiny_backbone, tiny_texts

    folder = make_tiny_backbone(tmp_path / "tiny", tiny_texts([hand_dataset]))
    counter = TokenCounter(AutoTokenizer.from_pretrained(folder))
    full = render(samples["0:0"], hand_dataset.titles)
    for budget in (counter.count(full) - 5, counter.count(full) - 10):
        cut = render(samples["0:0"], hand_dataset.titles, PromptSettings(max_tokens=budget), counter)
        assert counter.count(cut) <= budget
        assert "Medications on admission:" in cut and "Allergies: Penicillins" in cut and " ..." in cut
