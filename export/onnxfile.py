"""An ONNX file's ``leader.*`` metadata and its checked save: shared by the export
(`onnx_export`) and its int8 twin (`quantize`), so neither imports the other back."""

from __future__ import annotations

from pathlib import Path

from .runtime import PREFIX


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace the model's ``leader.*`` metadata_props with `meta` (other keys are kept)."""
    keep = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*keep, *meta.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def save_checked(proto, path: Path) -> None:
    """Save as one file (weights inside) and run the full ONNX checker on it."""
    import onnx

    onnx.save_model(proto, str(path), save_as_external_data=False)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise RuntimeError(f"exported model fails onnx.checker: {err}") from err
