"""edgerec train (the optional edgerec[train] extra): fine-tuning the real PP-OCRv4 weights on rendered lines.

The rendered domain is one the stock model reads wrong in a PaddleX-like way: plate-style codes printed with a
'·' separator that the labels omit (as in real licence-plate sets), white on blue. A few steps with the backbone
frozen teach the model to drop the separator; the saved best_accuracy/ then loads with create_model and reads
the validation lines better than the stock model does.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgerec.cli import main

_MISSING = [m for m in ("torch", "onnx2torch", "onnxruntime") if importlib.util.find_spec(m) is None]
if _MISSING:  # onnx2torch is not imported here: edgerec imports it behind a torchvision stand-in
    pytest.skip(f"fine-tuning needs the train extra ({', '.join(_MISSING)} not installed): "
                "pip install 'edgerec[train]'", allow_module_level=True)
import torch  # noqa: E402

# onnx2torch's Slice indexes with a list, which torch warns about on every forward; results are unaffected
pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence for multidimensional indexing")

V4 = "PP-OCRv4_mobile_rec"
PROVINCES = "京沪川粤苏浙皖鲁"
ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
MISSING_CHAR = "€"  # not in ppocr_keys_v1.txt


def _plate(rng: random.Random) -> str:
    return rng.choice(PROVINCES) + rng.choice("ABCDEFGH") + "".join(rng.choice(ALNUM) for _ in range(5))


def _render(text: str) -> np.ndarray:
    from edgerec.io.fonts import render_line

    return render_line(text, height=32, font_kind="cjk", fg=(255, 255, 255), bg=(160, 60, 20))


def _write_dataset(folder, n_train: int = 32, n_val: int = 16, seed: int = 0) -> list[tuple[str, str]]:
    """MSTextRecDataset of plate lines ('京A·12345' drawn, '京A12345' labelled) plus two lines edgerec must report."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n_train + n_val):
        label = _plate(rng)
        name = f"images/{i:04d}.png"
        cv2.imwrite(str(folder / name), _render(label[:2] + "·" + label[2:]))
        rows.append((name, label))
    cv2.imwrite(str(folder / "images/missing.png"), _render("A€B"))
    cv2.imwrite(str(folder / "images/long.png"), _render("0123456789"))
    bad = [("images/missing.png", f"A{MISSING_CHAR}B"), ("images/long.png", "0123456789" * 5)]
    train = rows[:n_train] + bad
    (folder / "train.txt").write_text("".join(f"{p}\t{t}\n" for p, t in train), encoding="utf-8")
    (folder / "val.txt").write_text("".join(f"{p}\t{t}\n" for p, t in rows[n_train:]), encoding="utf-8")
    return rows[n_train:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, v4):
    """One short fine-tuning run of the real PP-OCRv4 weights (backbone frozen: about half a minute)."""
    from edgerec.train.finetune import TrainConfig, finetune

    root = tmp_path_factory.mktemp("train")
    val = _write_dataset(root / "ds")
    cfg = TrainConfig(model=V4, dataset=str(root / "ds"), output=str(root / "out"), epochs=2, batch_size=8,
                      freeze_backbone=True, max_steps=6, seed=0)
    result = finetune(cfg, progress=False)
    return {"root": root, "out": root / "out", "result": result, "val": val, "stock": v4}


def test_a_few_steps_lower_the_loss(trained):
    probe = trained["result"]["train_loss_probe"]
    assert probe["lines"] == 32
    assert probe["after"] < 0.5 * probe["before"], probe
    losses = [h["loss"] for h in trained["result"]["history"] if h["type"] == "train"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_writes_paddlex_outputs(trained):
    out, result = trained["out"], trained["result"]
    for name in ("train_result.json", "train.log", "config.yaml"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "train_result.json").read_text("utf-8"))
    assert on_disk["done_flag"] is True and on_disk["interrupted"] is False
    assert on_disk["model_name"] == V4 and on_disk["steps"] == 6
    best = on_disk["models"]["best"]
    assert best["model_dir"] == "best_accuracy"
    evals = [h for h in result["history"] if h["type"] == "eval"]
    assert [e["epoch"] for e in evals] == [0, 1, 2]  # the pretrained model is epoch 0
    assert best["score"] == max(e["acc"] for e in evals)
    assert best["score"] > evals[0]["acc"], "fine-tuning did not beat the stock model on its own val set"
    cfg = yaml.safe_load((out / "config.yaml").read_text("utf-8"))
    assert cfg["Global"]["mode"] == "train" and cfg["Train"]["freeze_backbone"] is True
    log = (out / "train.log").read_text("utf-8")
    assert "val acc" in log and "epoch 1 step 1: loss" in log
    for folder in ("best_accuracy", "latest"):
        files = {p.name for p in (out / folder).iterdir()}
        assert {"inference.onnx", "inference.yml", "ppocr_keys_v1.txt"} <= files, files
    assert not (out / ".work").exists()


def test_reports_labels_it_cannot_train_on(trained):
    train = trained["result"]["dataset"]["train"]
    assert train["lines"] == 34 and train["used"] == 32
    assert train["labels_with_chars_missing_from_charset"] == 1
    assert train["missing_chars"] == {MISSING_CHAR: 1}
    assert train["missing_char_examples"][0]["where"] == "train.txt:33"
    assert train["labels_longer_than_time_steps"] == 1
    long = train["too_long_examples"][0]
    assert long["where"] == "train.txt:34" and long["time_steps"] == 40 and long["steps_needed"] == 50
    log = (trained["out"] / "train.log").read_text("utf-8")
    assert "missing from the model's charset" in log and "longer than the model's time steps" in log


def test_best_model_loads_and_reads_better_than_stock(trained):
    from edgerec import create_model
    from edgerec.data.metrics import rec_metrics

    root, val = trained["root"], trained["val"]
    paths = [str(root / "ds" / p) for p, _ in val]
    labels = [t for _, t in val]
    tuned = create_model(model_dir=trained["out"] / "best_accuracy", progress=False)
    tuned_texts = [r["rec_text"] for r in tuned.predict(paths)]
    stock_texts = [r["rec_text"] for r in trained["stock"].predict(paths)]
    tuned_acc = rec_metrics(tuned_texts, labels)["acc"]
    assert tuned_acc > rec_metrics(stock_texts, labels)["acc"]
    # OpenVINO on the written-back ONNX agrees with the torch validation that picked the model
    assert abs(tuned_acc - trained["result"]["models"]["best"]["score"]) <= 1.5 / len(labels)


def test_write_back_matches_torch(trained, tmp_path):
    import onnxruntime as ort

    from edgerec.train.onnx_torch import load_for_training, write_back

    src = trained["out"] / "best_accuracy" / "inference.onnx"
    rec = load_for_training(src)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move every trainable tensor, so a weight that is not written back shows
        for p in rec.module.parameters():
            p.mul_(1 + 0.05 * torch.randn(p.shape, generator=gen))
    dst = write_back(rec, tmp_path / "patched.onnx")
    patched = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    rec.module.eval()
    for width in (160, 320, 500):  # the width stays dynamic in the written file
        x = np.random.default_rng(width).standard_normal((2, 3, 48, width)).astype(np.float32)
        with torch.no_grad():
            want = torch.softmax(rec.module(torch.from_numpy(x)), -1).numpy()
        got = patched.run(None, {patched.get_inputs()[0].name: x})[0]
        assert got.shape == want.shape == (2, width // 8, 6625)
        assert np.abs(got - want).max() < 1e-4
        assert np.abs(original.run(None, {"x": x})[0] - want).max() > 1e-2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_without_cuda_is_a_clear_error(tmp_path):
    _write_dataset(tmp_path / "ds", 2, 1)
    res = CliRunner().invoke(main, ["train", V4, "--dataset", str(tmp_path / "ds"), "--device", "gpu",
                                    "--output", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "--device gpu" in res.output and "no CUDA GPU" in res.output


def test_without_torch_says_how_to_install(tmp_path, monkeypatch):
    _write_dataset(tmp_path / "ds", 2, 1)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    res = CliRunner().invoke(main, ["train", V4, "--dataset", str(tmp_path / "ds"), "--output",
                                    str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "pip install 'edgerec[train]'" in res.output
