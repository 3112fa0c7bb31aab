"""edgerec: PaddleX-compatible text-line recognition on OpenVINO for Intel edge devices.

Importing edgerec loads neither OpenVINO nor any model, and never touches the network.
"""

from __future__ import annotations

from edgerec._version import __version__

__all__ = ["TextRecResult", "TextRecognizer", "__version__", "create_model"]


def __getattr__(name: str):
    if name in ("create_model", "TextRecognizer"):
        from edgerec import api

        return getattr(api, name)
    if name == "TextRecResult":
        from edgerec.results import TextRecResult

        return TextRecResult
    raise AttributeError(f"module 'edgerec' has no attribute {name!r}")
