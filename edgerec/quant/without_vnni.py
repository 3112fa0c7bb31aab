"""The int8 guard once more as a CPU without VNNI computes it, so that a model checked on one kind of CPU is not
trusted blindly on the other.

Without VNNI (AVX2 CPUs, AVX-512 ones before Cascade Lake) OpenVINO's int8 kernels sum u8 x s8 pairs into int16 with
saturation, and some models read very differently: PP-OCRv6_tiny's int8 loses 0.8 pt on iiit5k with VNNI and 6.9 pt
without (docs/measurements/2026-12-07-int8-without-vnni.md). A CPU with VNNI and AVX-512 runs that arithmetic when
oneDNN is capped at AVX512_CORE (``ONEDNN_MAX_CPU_ISA``; read once per process, hence a child process). A cap at
AVX2 is not usable: OpenVINO 2026.4's CPU plugin crashes or fails under it.

    python -m edgerec.quant.without_vnni WORKDIR   # reads job.json, pixels.npy, model.xml there; writes texts.json
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgerec.utils import cpu

log = logging.getLogger(__name__)

CAP = "AVX512_CORE"
# the child's time limit: its start and compile, then the lines (words take milliseconds, long lines more)
TIMEOUT_S, TIMEOUT_PER_LINE_S = 120.0, 0.5
# the eval lines go to the child through a temporary file; beyond this many bytes of pixels it is not worth it
MAX_JOB_BYTES = 2 << 30


def why_not_emulated() -> str:
    """'' when this machine can read int8 as a CPU without VNNI does, else why not."""
    flags = cpu.cpu_info()["isa"]
    if cpu.int8_vnni() is None:
        return "not an x86 CPU whose ISA flags can be read: int8 does not depend on VNNI here"
    if not cpu.has_int8_vnni():
        return "this CPU has no int8 VNNI: the guard above already read int8 as CPUs without VNNI do"
    if not (flags["avx512f"] and flags["avx512bw"]):
        return "emulating a CPU without VNNI needs AVX-512 (a cap at AVX2 crashes OpenVINO's CPU plugin)"
    return ""


def read_without_vnni(q_model, classes: list[str], images: list, height: int, reading: dict,
                      batch_size: int) -> tuple[list[str] | None, str]:
    """(texts of ``images`` read by ``q_model`` with int8 as without VNNI, '') or (None, why it was not done)."""
    import openvino as ov

    why = why_not_emulated()
    if why:
        return None, why
    if not images:
        return None, "no eval lines"
    if any(not isinstance(im, np.ndarray) or im.dtype != np.uint8 for im in images):
        return None, "the eval lines are not all uint8 images"
    size = sum(im.nbytes for im in images)
    if size > MAX_JOB_BYTES:
        return None, f"the eval lines are {size / 2**30:.1f} GiB of pixels, too many to hand to a child process"
    with tempfile.TemporaryDirectory(prefix="edgerec-novnni-") as tmp:
        work = Path(tmp)
        # as in memory: the float layers must not become fp16, or the two readings differ by more than VNNI
        ov.save_model(q_model, str(work / "model.xml"), compress_to_fp16=False)
        # no pickle: the lines' pixels in one flat uint8 array, their shapes and the rest in JSON
        np.save(work / "pixels.npy", np.concatenate([im.ravel() for im in images]))
        (work / "job.json").write_text(json.dumps({
            "classes": classes, "shapes": [list(im.shape) for im in images], "height": height, "reading": reading,
            "batch_size": batch_size}, ensure_ascii=False), encoding="utf-8")
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": CAP}
        env.pop("DNNL_MAX_CPU_ISA", None)
        src = Path(__file__).resolve().parents[2]
        if src.name not in ("site-packages", "dist-packages"):  # a source tree, maybe not installed: this edgerec
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
        try:  # in the scratch folder: no other edgerec checkout in the working directory shadows this one
            res = subprocess.run([sys.executable, "-m", "edgerec.quant.without_vnni", str(work)], env=env, cwd=work,
                                 capture_output=True, text=True, errors="replace",
                                 timeout=TIMEOUT_S + TIMEOUT_PER_LINE_S * len(images))
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"the child process failed: {exc}"
        out = work / "texts.json"
        if res.returncode != 0 or not out.is_file():
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit status {res.returncode}"]
            return None, f"the child process failed ({tail[0][:300]})"
        texts = json.loads(out.read_text(encoding="utf-8"))
        if not isinstance(texts, list) or len(texts) != len(images) or not all(isinstance(t, str) for t in texts):
            return None, "the child process wrote no text per line"
        return texts, ""


def int8_saturates() -> bool:
    """Whether this process's int8 convolutions saturate: a known answer, not a flag. 64 channels of u8 255 times
    s8 127 sum to 2,072,640 with VNNI; summed in int16 pairs first they come to 32 x 32,767 = 1,048,544."""
    import openvino as ov
    import openvino.opset13 as ops

    channels = 64
    x = ops.parameter([1, channels, 4, 4], np.float32)
    acts = ops.fake_quantize(x, np.float32(0), np.float32(255), np.float32(0), np.float32(255), 256)  # u8
    weights = ops.multiply(ops.convert(ops.constant(np.full((16, channels, 1, 1), 127, np.int8)), np.float32),
                           ops.constant(np.ones((16, 1, 1, 1), np.float32)))  # s8, dequantized
    conv = ops.convolution(acts, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    compiled = ov.Core().compile_model(ov.Model([conv], [x]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(np.full((1, channels, 4, 4), 255, np.float32))[0]
    return float(np.max(out)) < 0.75 * 255 * 127 * channels


def _main(workdir: str) -> int:
    import openvino as ov

    from edgerec.quant.quantize import _predictor

    work = Path(workdir)
    # the cap must have taken, in oneDNN and not only in the environment (which always says so here): never
    # report VNNI texts as the other arithmetic's
    if not int8_saturates():
        print(f"int8 does not saturate here: oneDNN is not capped below VNNI ({cpu.isa_summary()})", file=sys.stderr)
        return 2
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    pixels = np.load(work / "pixels.npy")
    images, start = [], 0
    for shape in job["shapes"]:
        size = int(np.prod(shape))
        images.append(pixels[start:start + size].reshape(shape))
        start += size
    model = ov.Core().read_model(str(work / "model.xml"))
    texts = _predictor(model, job["classes"], job["height"], job["reading"]).recognize(images, job["batch_size"])
    (work / "texts.json").write_text(json.dumps([t for t, _ in texts], ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
