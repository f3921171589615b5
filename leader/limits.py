"""Defaults that configs and stages share, in a module that imports nothing, so the CLI's option
table (`leader --help`) reads them without numpy; `leader.encoding` and the configs apply them."""

MIN_PATIENTS = 5
"""Default k of the vocabulary rule: a token (code, medication, profile value) enters a vocabulary
only when at least k distinct training patients carry it, so nothing that singles out a patient
(a name typed into a profile field, a record number in a code column) reaches a model file.
k = 5 follows common k-anonymity practice for released aggregates."""
MAX_NOTE_TOKENS = 256
"""Default cap on the note ids of one visit (the synthetic cohort's notes have at most 96 known words)."""
