"""`leader serve`: the exported student as an HL7 CDS Hooks 2.0 service and a small JSON API.

FastAPI + uvicorn on top of `leader.export.runtime.Recommender` (onnxruntime + numpy, never torch);
the FHIR mapping is the importer's (`leader.data.fhir_map.patient_record`). Modules: `config` (the
options), `auth` (JWT checks of CDS Hooks), `cds` (discovery, hook parsing, cards), `model` (the
loaded file and its metadata), `app` (the endpoints), `server` (uvicorn, workers, signals).
Needs the `[serve]` extra: ``pip install 'leader[serve]'``.
"""
