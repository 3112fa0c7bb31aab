"""The engine registry: the one place that names engine kinds.

Each entry maps an engine name to the module that implements it; the module's ``KIND`` (an
:class:`~edgerec.engines.base.EngineKind`) says what source format it runs, which devices it takes (its device
check) and its typed options. Modules are imported only when their engine is asked for, so a missing optional
package (onnxruntime, paddlepaddle) costs nothing until then. Adding an engine is one module plus one
``register`` line below.
"""

from __future__ import annotations

import importlib

from edgerec.engines.base import DeviceSpec, EngineKind, parse_device
from edgerec.errors import DeviceError

ENGINES: dict[str, str] = {}  # engine name -> module that defines KIND, in the order the CLI lists them
# the engine a device family runs on when none is forced; families not listed run on DEFAULT_ENGINE
_DEFAULT_BY_FAMILY: dict[str, str] = {}
DEFAULT_ENGINE = "openvino"


def register(name: str, module: str, *, default_for: tuple[str, ...] = ()) -> None:
    """Add an engine: ``module`` defines ``KIND``; ``default_for`` lists device families it serves by default."""
    ENGINES[name] = module
    for family in default_for:
        _DEFAULT_BY_FAMILY[family] = name


register("openvino", "edgerec.engines.openvino")
register("onnxruntime", "edgerec.engines.onnxruntime")
register("paddle", "edgerec.engines.paddle", default_for=("nvidia",))


def names() -> tuple[str, ...]:
    """Every registered engine name."""
    return tuple(ENGINES)


def get(name: str) -> EngineKind:
    """The engine called ``name`` (case-insensitive); an unknown one raises an error listing the known ones."""
    key = str(name).strip().lower()
    if key not in ENGINES:
        raise DeviceError(f"engine {name!r}: use {', '.join(ENGINES)} (or None to pick by device)")
    kind = importlib.import_module(ENGINES[key]).KIND
    if kind.name != key:
        raise RuntimeError(f"{ENGINES[key]} declares engine {kind.name!r}, registered as {key!r}")
    return kind


def default_engine(device: str | DeviceSpec | None) -> str:
    """The engine a device runs on when none is forced (Paddle Inference for an NVIDIA GPU, else OpenVINO)."""
    return _DEFAULT_BY_FAMILY.get(parse_device(device).family, DEFAULT_ENGINE)


def pick(engine: str | None, device: str | DeviceSpec | None) -> EngineKind:
    """The engine to use: ``engine`` when given, else the device's default. The device is not checked here."""
    return get(default_engine(device) if engine is None else engine)
