"""Which model x precision x engine configurations a report runs, and which it skips and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgerec.errors import EdgeRecError

ENGINES = ("openvino", "onnxruntime", "paddle")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# edgerec's own engines: filled markers in the plot; the others (ONNX Runtime, Paddle, Tesseract, ...) are peers
EDGEREC_ENGINES = ("openvino",)
# peers outside edgerec's engines, each with its own runner (edgerec.bench.runners, edgerec.bench.paddlex_peer)
PEER_ENGINES = ("tesseract", "rapidocr", "paddlex")
# PaddleX itself: a card model read by paddlex.create_model(...).predict, in an interpreter of its own; its Config
# options carry that interpreter ("python") and the PaddleX model folder ("model_dir") to the child processes
PADDLEX = "paddlex"
NO_SPIN = (("allow_spinning", False),)  # ONNX Runtime with its intra-op threads not spinning between runs
# options a Config may carry that are create_model's own rather than the engine's, e.g. (("width_bucket", 160),)
MODEL_OPTIONS = ("min_width", "width_bucket", "recheck", "recheck_below")

# ------------------------------------------------------------------------------------------------ configs

@dataclass(frozen=True)
class Config:
    model: str
    precision: str
    engine: str
    # sorted (name, value) pairs: engine options (e.g. NO_SPIN) and create_model's own (MODEL_OPTIONS); reports
    # keep them all under "engine_options"
    options: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        """A short name for tables and the plot: 'v4_mobile ov int8', 'v4_mobile ort fp32 no-spin'."""
        short = {"openvino": "ov", "onnxruntime": "ort", "paddle": "paddle", "tesseract": "tesseract"}
        name = self.model.replace("PP-OCR", "").replace("_rec", "")
        if self.engine == PADDLEX:  # 'v4_mobile paddlex fp32': a model of the card, its options are paths
            return f"{name} paddlex {self.precision}"
        if self.engine in PEER_ENGINES:
            return f"{self.model} {self.precision}"
        extra = "".join(" no-spin" if (k, v) == NO_SPIN[0] else f" {k}={v}" for k, v in self.options)
        return f"{name} {short.get(self.engine, self.engine)} {self.precision}{extra}"

    @property
    def edgerec(self) -> bool:
        """Whether this is edgerec's own engine (not a peer it is compared with)."""
        return self.engine in EDGEREC_ENGINES

    def as_dict(self) -> dict:
        return {"model": self.model, "precision": self.precision, "engine": self.engine, "label": self.label,
                "engine_options": dict(self.options), "edgerec": self.edgerec}

    @classmethod
    def of(cls, row: dict) -> Config:
        """The configuration a report row (or skip entry) was made by."""
        return cls(row["model"], row["precision"], row["engine"],
                   tuple(sorted((row.get("engine_options") or {}).items())))


def create_kwargs(options: dict | None) -> dict:
    """create_model keyword arguments for a configuration's options: create_model's own (MODEL_OPTIONS) by name,
    the rest as ``engine_options``."""
    options = dict(options or {})
    own = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
    return {"engine_options": options or None, **own}


def plan_configs(models: Sequence[str], precisions: Sequence[str], engines: Sequence[str],
                 explicit: Sequence[Config] | None = None) -> tuple[list[Config], list[dict]]:
    """Every model x engine x precision (or the ``explicit`` list) to run, and those skipped up front, with why.

    Unknown model names raise (a typo should stop the run); configurations that cannot exist are skipped:
    ONNX Runtime and Paddle run the source model at fp32 only, bf16 needs a CPU with native bf16, and int8
    needs `edgerec quantize` first.
    ONNX Runtime is run both ways, as it ships (its threads spin after each run) and with spinning off
    (NO_SPIN), unless a configuration says which.
    """
    from edgerec.utils.cpu import cpu_info, has_native_bf16
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
        cfg = Config(get_card(c.model).name, c.precision, c.engine, c.options)
        if cfg.engine != "openvino" and cfg.precision != "fp32":
            skipped.append({**cfg.as_dict(), "reason": f"{cfg.engine} runs the source model at fp32 only"})
        elif cfg.precision == "bf16" and not has_native_bf16():
            skipped.append({**cfg.as_dict(), "reason": f"this CPU ({cpu_info()['model']}) has no native bf16"})
        elif cfg.precision == "int8" and not (homes.ir_dir(cfg.model, "int8") / "model.xml").is_file():
            skipped.append({**cfg.as_dict(), "reason": (f"no int8 model in {homes.ir_dir(cfg.model, 'int8')}; "
                                                        f"make one with `edgerec quantize {cfg.model}`")})
        else:
            spins = [cfg, Config(cfg.model, cfg.precision, cfg.engine, NO_SPIN)] if (
                cfg.engine == "onnxruntime" and "allow_spinning" not in dict(cfg.options)) else [cfg]
            configs.extend(x for x in spins if x not in configs)
    return configs, skipped
