"""Loaders that end in a prepared dataset (`leader.cohort.write_dataset`), and the synthetic cohort.

- `mimic3`, `mimic4`: PhysioNet tables -> prepared dataset (`tables` reads CSVs, `meds` codes
  medications, `notes` cuts LAMO's note sections, `assemble` applies the cleaning rules).
- `jsonl`: a hospital's export in the cohort format.
- `synth`: a synthetic cohort in the MIMIC layout (`clinical` is its table, `synth_raw` writes it),
  prepared through the same loaders; `synthesize(out, patients, seed, fmt)` is the library call.
- `stats`: what a prepared dataset holds.

Nothing is imported here, so `import leader.data` stays cheap (polars loads with a loader).
"""
