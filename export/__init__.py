"""leader.export: ONNX export, the torch-free runtime, `leader predict` and `leader bench`.

No phone-home. onnxruntime's official wheels (1.32 here) carry Microsoft's 1DS telemetry: once
onnxruntime initialises it keeps a device id and an event database under
``$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime`` and sends DNS queries for
``mobile.events.data.microsoft.com``; ``onnxruntime.disable_telemetry_events()`` does not stop
that (it only mutes non-essential events). ``ORT_DISABLE_TELEMETRY=1`` does, but only if it is set
before onnxruntime is first imported (the uploader starts then). Every module here is imported
through this package, so setting it below covers the runtime, `leader predict`, `leader export`
and `leader bench` (tests/test_no_egress.py checks it under strace). It is forced to "1", not
defaulted: a hospital deployment must not be able to turn it back on by a stray variable.
"""

import os
import sys
import warnings

_was_off = os.environ.get("ORT_DISABLE_TELEMETRY") == "1"
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
if "onnxruntime" in sys.modules and not _was_off:  # imported before us: its telemetry may be running
    warnings.warn(
        "onnxruntime was imported before leader.export, so its telemetry could not be switched off; "
        "import leader.export first or set ORT_DISABLE_TELEMETRY=1 in the environment",
        RuntimeWarning,
        stacklevel=2,
    )
