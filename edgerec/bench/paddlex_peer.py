"""PaddleX itself as a peer in the report: ``paddlex.create_model(...).predict`` on the same BGR line crops.

PaddleX (``paddlex[ocr-core]==3.7.2`` with paddlepaddle) brings opencv-contrib-python, which clashes with
edgerec's opencv-python-headless, so it runs from an interpreter of its own (a virtualenv named by
``--paddlex-python`` or ``EDGEREC_PADDLEX_PYTHON``), never in edgerec's process:

* texts (accuracy) come from one long-lived child of that interpreter (``PaddleXProcess`` here, the generic
  ``edgerec.bench.peer_process.serve`` there): this process sends it the decoded lines over a pipe, it answers
  with PaddleX's ``rec_text``;
* latency comes from the timing children (edgerec.bench.timing), started with that interpreter like every other
  configuration's, which open ``PaddleXRunner`` directly (no pipe in what is timed).

The model is a card model's own Paddle weights (the same files edgerec exports), in a PaddleX model folder built
under the model home (``paddlex/<name>/``): inference.pdmodel (or .json) + inference.pdiparams and an
inference.yml as PaddleX 3.7.2's TextRecRunnerPredictor reads it (Global.model_name, PreProcess.transform_ops,
PostProcess CTCLabelDecode + character_dict). Its first op is ``DecodeImage: {channel_first: false, img_mode:
BGR}``: without it PaddleX reads with ``ReadImage(format="RGB")`` and turns the BGR arrays it is given into RGB,
which changes texts.

What the child imports here: the standard library, NumPy, edgerec.bench.configs and edgerec.errors (and, for
timing, edgerec.bench.runners/measure/timing and edgerec.io.inputs): no OpenVINO, NNCF or rapidfuzz, which the
PaddleX virtualenv does not have (tests/test_bench.py checks this).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgerec.bench.configs import PADDLEX, Config
from edgerec.bench.peer_process import PeerProcess
from edgerec.errors import EdgeRecError

ENV_VAR = "EDGEREC_PADDLEX_PYTHON"
PADDLEX_REQUIREMENT = "paddlex[ocr-core]==3.7.2"
HOW_TO_ADD = ("to add PaddleX as a peer, make a virtualenv for it (python3 -m venv ~/pxvenv && ~/pxvenv/bin/pip "
              f"install '{PADDLEX_REQUIREMENT}' paddlepaddle) and pass --paddlex-python ~/pxvenv/bin/python "
              f"(or set {ENV_VAR}); see docs/usage.md")
YML_VERSION = 1  # bump when inference_yml() changes, so folders made before are rebuilt
MIN_W, IMG_H, MAX_W = 320, 48, 3200  # PaddleX's OCRReisizeNormImg: width int(H * max(320 / 48, w / h)), cap 3200


def paddlex_config(model: str, python: str, model_dir: str | Path) -> Config:
    """The configuration of PaddleX reading ``model`` (a card name) from ``model_dir`` with ``python``."""
    return Config(model, "fp32", PADDLEX, (("model_dir", str(model_dir)), ("python", str(python))))


# ------------------------------------------------------------------------------------------------ the interpreter

def probe(python: str | None, timeout: float = 300) -> str:
    """The PaddleX and Paddle versions ``python`` imports (with edgerec's child on its path), or EdgeRecError
    with what is wrong and how to add the peer."""
    if not python:
        raise EdgeRecError(f"no PaddleX interpreter given: {HOW_TO_ADD}")
    from edgerec.bench.timing import child_env

    code = ("import paddlex, paddle, edgerec.bench.child, edgerec.bench.paddlex_peer; "
            "print(paddlex.__version__, paddle.__version__)")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=child_env(),
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EdgeRecError(f"PaddleX interpreter {python} cannot run ({exc}); {HOW_TO_ADD}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeRecError(f"PaddleX interpreter {python} cannot import paddlex ({tail}); {HOW_TO_ADD}")
    words = (proc.stdout.strip().splitlines() or ["? ?"])[-1].split()
    return f"{words[0]} (paddlepaddle {words[-1]})"


# ------------------------------------------------------------------------------------------------ the model folder

def inference_yml(model_name: str, height: int, entries: Sequence[str]) -> str:
    """The inference.yml PaddleX 3.7.2 needs for a CTC line recognizer (see TextRecRunnerPredictor._build):
    DecodeImage (BGR: the arrays are edgerec's BGR crops), RecResizeImg (its image_shape sets the height and the
    minimum width), KeepKeys, and CTCLabelDecode with the dict entries (PaddleX adds blank and the space)."""
    import yaml

    width = int(round(height * MIN_W / IMG_H))
    doc = {"Global": {"model_name": model_name},
           "PreProcess": {"transform_ops": [
               {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
               {"RecResizeImg": {"image_shape": [3, int(height), width]}},
               {"KeepKeys": {"keep_keys": ["image", "length", "valid_ratio"]}}]},
           "PostProcess": {"name": "CTCLabelDecode", "character_dict": list(entries)}}
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1000)


def model_folder(model: str) -> Path:
    """A PaddleX model folder for the card model ``model``, under the model home; made (atomically) from its
    Paddle source, fetched first if it is not cached; reused while its source and yml are unchanged."""
    import hashlib

    from edgerec.utils.fs import atomic_dir, atomic_write_text, file_lock
    from edgerec.zoo import home as homes
    from edgerec.zoo.cards import get_card
    from edgerec.zoo.export import read_charset_entries
    from edgerec.zoo.resolve import resolve_source

    card = get_card(model)
    if not card.use_space_char:
        raise EdgeRecError(f"{card.name}: its card says no space class, and PaddleX's CTCLabelDecode always adds one")
    src, spec = resolve_source(card.name, formats=("paddle",), progress=False)
    if src.params_file is None:
        raise EdgeRecError(f"{src.folder}: no inference.pdiparams beside {src.model_file.name}")
    yml = inference_yml(card.name, spec.input_height, read_charset_entries(src)).encode("utf-8")
    files = {"inference" + src.model_file.suffix: Path(src.model_file), "inference.pdiparams": Path(src.params_file)}
    stamp = {"version": YML_VERSION, "source_id": src.source_id, "weights_sha256": src.weights_sha256,
             "inference_yml_sha256": hashlib.sha256(yml).hexdigest(),
             "sizes": {**{n: f.stat().st_size for n, f in files.items()}, "inference.yml": len(yml)}}
    final = homes.paddlex_dir(card.name)
    with file_lock(str(homes.lock_path(card.name)) + ".paddlex"):
        try:
            if (json.loads((final / "edgerec.json").read_text("utf-8")) == stamp
                    and all((final / n).stat().st_size == size for n, size in stamp["sizes"].items())):
                return final
        except (OSError, ValueError):
            pass
        with atomic_dir(final) as tmp:
            for name, f in files.items():
                (tmp / name).write_bytes(f.read_bytes())
            (tmp / "inference.yml").write_bytes(yml)
            atomic_write_text(tmp / "edgerec.json", json.dumps(stamp, indent=1) + "\n")
    return final


def coverage(chars: set[str], labels: Sequence[str]) -> float:
    """Share of the labels' characters (spaces aside) in ``chars`` (as ModelRunner.coverage)."""
    text = "".join(labels).replace(" ", "")
    return sum(c in chars for c in text) / len(text) if text else 1.0


# ------------------------------------------------------------------------------------------------ in PaddleX's venv

class _PaddleXLines:
    """What both PaddleX runners share: PaddleX's input width, and warming every shape by reading it once."""

    def width_of(self, image: np.ndarray) -> int:
        h, w = image.shape[:2]
        return min(MAX_W, int(IMG_H * max(MIN_W / IMG_H, w / h)))

    def warm(self, groups: list[tuple[list[int], int]], images: list[np.ndarray]) -> None:
        for idxs, _ in groups:
            self.recognize([images[i] for i in idxs], len(idxs))

    def compute_precision(self) -> str | None:
        return None  # Paddle's CPU runner (mkldnn) says nothing of it


class PaddleXRunner(_PaddleXLines):
    """PaddleX's text recognition module on one model folder, recognition only, in this (PaddleX's) interpreter:
    ``predict`` on BGR arrays at batch 1 and 8 (PaddleX batches 8 lines in a row, padded to the widest)."""

    def __init__(self, cfg: Config, threads: int | None):
        opts = dict(cfg.options)
        try:
            import paddlex
        except ImportError as exc:
            raise EdgeRecError(f"{sys.executable} cannot import paddlex ({exc}); {HOW_TO_ADD}") from exc
        self.cfg = cfg
        self.model_dir = Path(str(opts["model_dir"]))
        self.model = paddlex.create_model(model_name=cfg.model, model_dir=str(self.model_dir), device="cpu",
                                          engine_config={"cpu_threads": int(threads)} if threads else None)
        self.version = getattr(paddlex, "__version__", "?")
        self.batch_sizes = (1, 8)
        from edgerec.bench.runners import _Stages

        self.stages = {1: _Stages(), 8: _Stages()}  # no stage split: PaddleX times nothing for us
        self.phase: int | None = None

    def recognize(self, images: list[np.ndarray], batch_size: int) -> list[str]:
        return [str(r["rec_text"]) for r in self.model.predict(list(images), batch_size=batch_size)]

    def size_bytes(self) -> int | None:
        return sum(f.stat().st_size for f in self.model_dir.glob("inference.*") if f.suffix != ".yml") or None

    def engine_config(self) -> dict:
        """PaddleX's version, the interpreter, and what its Paddle runner was configured with."""
        out: dict = {"paddlex": self.version, "python": sys.executable}
        try:
            cfg = self.model._predictor.runner._config  # private: PaddleX 3.7.2's PaddleStaticRunner
            out.update({k: cfg.get(k) for k in ("device_type", "run_mode", "cpu_threads", "enable_new_ir")})
        except AttributeError:
            pass
        return out

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ in edgerec's process

class PaddleXProcess(_PaddleXLines, PeerProcess):
    """The PaddleX peer as this process sees it: its lines read by a long-lived child of PaddleX's interpreter
    (edgerec.bench.peer_process). Used for texts; with ``rounds=0`` its in-process times include the pipe."""

    def __init__(self, cfg: Config, threads: int | None, timeout: float = 600):
        PeerProcess.__init__(self, cfg, threads, name="PaddleX", how_to=HOW_TO_ADD, batch_sizes=(1, 8),
                             timeout=timeout)
