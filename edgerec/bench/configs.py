"""Which model x precision x engine configurations a report runs, and which it skips and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgerec.errors import EdgeRecError

ENGINES = ("openvino", "onnxruntime", "paddle")
PRECISIONS = ("fp32", "fp16", "int8")

# ------------------------------------------------------------------------------------------------ configs

@dataclass(frozen=True)
class Config:
    model: str
    precision: str
    engine: str

    @property
    def label(self) -> str:
        """A short name for tables and the plot: 'v4_mobile ov int8'."""
        short = {"openvino": "ov", "onnxruntime": "ort", "paddle": "paddle", "tesseract": "tesseract"}
        if self.engine == "tesseract":
            return f"tesseract {self.precision}"
        name = self.model.replace("PP-OCR", "").replace("_rec", "")
        return f"{name} {short.get(self.engine, self.engine)} {self.precision}"

    def as_dict(self) -> dict:
        return {"model": self.model, "precision": self.precision, "engine": self.engine, "label": self.label}


def plan_configs(models: Sequence[str], precisions: Sequence[str], engines: Sequence[str],
                 explicit: Sequence[Config] | None = None) -> tuple[list[Config], list[dict]]:
    """Every model x engine x precision (or the ``explicit`` list) to run, and those skipped up front, with why.

    Unknown model names raise (a typo should stop the run); configurations that cannot exist are skipped:
    ONNX Runtime and Paddle run the source model at fp32 only, and int8 needs `edgerec quantize` first.
    """
    from edgerec.zoo import home as homes
    from edgerec.zoo.cards import get_card

    wanted = list(explicit) if explicit is not None else [
        Config(m, p, e) for m in models for e in engines for p in precisions]
    configs, skipped = [], []
    for c in wanted:
        if c.engine not in ENGINES:
            raise EdgeRecError(f"engine {c.engine!r}: use one of {', '.join(ENGINES)}")
        if c.precision not in PRECISIONS:
            raise EdgeRecError(f"precision {c.precision!r}: use one of {', '.join(PRECISIONS)}")
        cfg = Config(get_card(c.model).name, c.precision, c.engine)
        if cfg.engine != "openvino" and cfg.precision != "fp32":
            skipped.append({**cfg.as_dict(), "reason": f"{cfg.engine} runs the source model at fp32 only"})
        elif cfg.precision == "int8" and not (homes.ir_dir(cfg.model, "int8") / "model.xml").is_file():
            skipped.append({**cfg.as_dict(), "reason": (f"no int8 model in {homes.ir_dir(cfg.model, 'int8')}; "
                                                        f"make one with `edgerec quantize {cfg.model}`")})
        elif cfg not in configs:
            configs.append(cfg)
    return configs, skipped
