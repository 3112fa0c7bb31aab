"""edgerec train with a dataset dict.txt holding characters PP-OCRv4's charset lacks (issue 14, item 10).

PaddleX trains with the dataset's own dict.txt; edgerec does too, and keeps what the model knows: the CTC head
grows by the new characters' rows, the known rows are the pretrained ones. The dataset is rendered: short lines of
English words and numbers, three in four with a '♥' or '♣' somewhere (both missing from ppocr_keys_v1.txt, both
drawn by DejaVuSans). About 36 steps with the backbone frozen teach the two new rows; the tuned model, loaded from
best_accuracy/ and exported, carries the new charset and still reads a plain English line.
"""

from __future__ import annotations

import importlib.util
import random

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgerec.cli import main

_MISSING = [m for m in ("torch", "onnx2torch", "onnxruntime") if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip(f"fine-tuning needs the train extra ({', '.join(_MISSING)} not installed): "
                "pip install 'edgerec[train]'", allow_module_level=True)
import torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence for multidimensional indexing")

V4 = "PP-OCRv4_mobile_rec"
NEW = "♥♣"
WORDS = ("river stone light green paper table north quick brown fox jumps over lazy dog seven market winter "
         "house water field orange silver yellow window garden number").split()
PLAIN = "Hello World 2024"  # no training line holds 'Hello' or 'World'


def _render(text: str) -> np.ndarray:
    from edgerec.io.fonts import render_line

    return render_line(text, height=32, font_kind="latin")


def _label(rng: random.Random) -> str:
    words = [rng.choice(WORDS), str(rng.randint(0, 999)), rng.choice(WORDS).capitalize()]
    rng.shuffle(words)
    if rng.random() < 0.75:
        k = rng.randrange(3)
        j = rng.randint(0, len(words[k]))
        words[k] = words[k][:j] + rng.choice(NEW) + words[k][j:]
    return " ".join(words)


def _model_input(img: np.ndarray) -> np.ndarray:
    from edgerec.runtime.preprocess import resize_norm_into
    from edgerec.train.data import train_width

    x = np.zeros((1, 3, 48, train_width(*img.shape[:2], 48, 640)), np.float32)
    resize_norm_into(img, x[0])
    return x


def _old_entries() -> list[str]:
    from edgerec.zoo.export import read_charset_entries
    from edgerec.zoo.resolve import resolve_source

    return read_charset_entries(resolve_source(V4)[0])


def _write_dataset(folder, entries: list[str], n_train: int = 48, n_val: int = 16) -> list[tuple[str, str]]:
    rng = random.Random(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n_train + n_val):
        label = _label(rng)
        name = f"images/{i:03d}.png"
        cv2.imwrite(str(folder / name), _render(label))
        rows.append((name, label))
    (folder / "train.txt").write_text("".join(f"{p}\t{t}\n" for p, t in rows[:n_train]), encoding="utf-8")
    (folder / "val.txt").write_text("".join(f"{p}\t{t}\n" for p, t in rows[n_train:]), encoding="utf-8")
    (folder / "dict.txt").write_text("".join(f"{c}\n" for c in [*entries, *NEW]), encoding="utf-8")
    return rows[n_train:]


def test_the_new_characters_are_new():
    from edgerec.zoo.resolve import model_charset

    charset = set(model_charset(V4))
    assert not set(NEW) & charset
    assert set(PLAIN) <= charset


@pytest.fixture(scope="module")
def trained(tmp_path_factory, v4):
    """One fine-tuning run with the dataset's dict.txt (backbone frozen, 36 steps: under a minute on 2 cores)."""
    from edgerec.train.finetune import TrainConfig, finetune

    root = tmp_path_factory.mktemp("newdict")
    entries = _old_entries()
    val = _write_dataset(root / "ds", entries)
    cfg = TrainConfig(model=V4, dataset=str(root / "ds"), output=str(root / "out"), epochs=6, batch_size=8,
                      learning_rate=2e-3, freeze_backbone=True, seed=0)
    result = finetune(cfg, progress=False)
    return {"root": root, "out": root / "out", "result": result, "val": val, "entries": entries, "stock": v4}


@pytest.fixture(scope="module")
def base_rec():
    """The stock model as torch, and its class list."""
    from edgerec.runtime.charset import build_classes
    from edgerec.train.onnx_torch import load_for_training
    from edgerec.zoo.resolve import resolve_source

    src, spec = resolve_source(V4)
    rec = load_for_training(src.model_file, spec.input_height)
    return rec, build_classes(_old_entries(), rec.num_classes, spec.use_space_char)


def test_new_head_copies_the_known_rows(base_rec, tmp_path):
    import onnxruntime as ort

    from edgerec.train.charset_head import grow_head
    from edgerec.train.onnx_torch import load_for_training, write_back

    _, old_classes = base_rec
    rec = load_for_training(base_rec[0].source, 48)  # a fresh copy: grow_head changes the module in place
    entries = _old_entries()
    # the new dict reorders: the two new characters first, then the old ones (a dict need not extend the old one)
    new_entries = [*NEW, *entries]
    new_classes = ["blank", *new_entries, " "]
    x = torch.from_numpy(_model_input(_render(PLAIN)))
    rec.module.eval()
    with torch.no_grad():
        before = rec.module(x).numpy()
    change = grow_head(rec, old_classes, new_classes, new_entries)
    assert (change.old_classes, change.new_classes, rec.num_classes) == (6625, 6627, 6627)
    assert change.new_chars == list(NEW) and change.copied == 6625 and not change.dropped
    with torch.no_grad():
        after = rec.module(x).numpy()
    assert after.shape == before.shape[:2] + (6627,)
    # every known class (blank, each character, space) gives the logits it gave before, at its new index
    np.testing.assert_allclose(after[..., 0], before[..., 0], atol=1e-5)
    np.testing.assert_allclose(after[..., 3:], before[..., 1:], atol=1e-5)
    # the new rows start at the old rows' mean: they never win before training
    assert (after[..., 1:3].max(-1) < after.max(-1)).all()

    dst = write_back(rec, tmp_path / "grown.onnx")
    import onnx

    model = onnx.load(str(dst))
    assert model.graph.output[0].type.tensor_type.shape.dim[2].dim_value == 6627
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["character"].split("\n") == new_entries
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, torch.softmax(torch.from_numpy(after), -1).numpy(), atol=1e-5)


def test_dict_equal_to_the_models_keeps_the_head(base_rec, tmp_path):
    from edgerec.train.base_model import BaseModel
    from edgerec.train.charset_head import apply_dataset_dict

    rec, classes = base_rec
    entries = _old_entries()
    path = tmp_path / "dict.txt"
    path.write_text("".join(f"{c}\n" for c in entries), encoding="utf-8")
    base = BaseModel(V4, rec.source, rec.source, entries, "ppocr_keys_v1.txt", 48, True, "")
    lines: list[str] = []
    got_base, got_classes = apply_dataset_dict(rec, base, classes, path, lines.append)
    assert got_base is base and got_classes is classes and rec.head_change is None and rec.num_classes == 6625
    assert "the model's own charset" in lines[0]


def test_trains_with_the_dataset_dict(trained):
    result, out = trained["result"], trained["out"]
    assert result["dataset"]["train"]["labels_with_chars_missing_from_charset"] == 0  # no line left out
    assert result["dataset"]["train"]["used"] == 48
    assert result["label_dict"] == "best_accuracy/dict.txt"
    files = {p.name for p in (out / "best_accuracy").iterdir()}
    assert "dict.txt" in files and "ppocr_keys_v1.txt" not in files
    log = (out / "train.log").read_text("utf-8")
    assert "CTC head 6625 -> 6627 classes: 6625 rows copied" in log and "♥ ♣" in log
    evals = [h for h in result["history"] if h["type"] == "eval"]
    assert result["models"]["best"]["score"] > evals[0]["acc"]


def test_tuned_model_reads_the_new_characters(trained):
    from edgerec import create_model

    root, val = trained["root"], trained["val"]
    tuned = create_model(model_dir=trained["out"] / "best_accuracy", progress=False)
    assert len(tuned.info.classes) == 6627 and set(NEW) <= set(tuned.info.classes)
    texts = [r["rec_text"] for r in tuned.predict([str(root / "ds" / p) for p, _ in val])]
    with_new = [(t, want) for t, (_, want) in zip(texts, val) if set(want) & set(NEW)]
    assert with_new, "the val split has no line with a new character"
    right = [want for t, want in with_new if t == want]
    assert right, f"no line with a new character read right: {with_new}"
    # the stock model cannot read any of them
    stock = [r["rec_text"] for r in trained["stock"].predict([str(root / "ds" / p) for p, _ in val])]
    assert not any(set(t) & set(NEW) for t in stock)
    # the copied rows still read English the training never showed
    assert next(iter(tuned.predict([_render(PLAIN)])))["rec_text"] == PLAIN
    # PaddleX's way to load a trained model names it too: the card's 6625 classes do not apply to its own charset
    named = create_model(V4, model_dir=trained["out"] / "best_accuracy", progress=False)
    assert named.info.classes == tuned.info.classes and named.model_name == V4


def test_new_charset_goes_through_export(trained, tmp_path):
    from edgerec.zoo.export import read_info

    res = CliRunner().invoke(main, ["export", "--model-dir", str(trained["out"] / "best_accuracy"),
                                    "--output", str(tmp_path / "ir")])
    assert res.exit_code == 0, res.output
    info = read_info(tmp_path / "ir" / "model.xml")
    assert info.num_classes == 6627
    assert info.classes[-3:] == [*NEW, " "] and info.classes[1:-3] == trained["entries"]


def test_bad_dict_is_a_clear_error(tmp_path):
    from edgerec.train import TrainError
    from edgerec.train.charset_head import dataset_dict, read_new_dict

    with pytest.raises(TrainError, match="no such file"):
        dataset_dict(tmp_path, tmp_path / "nope.txt")
    assert dataset_dict(tmp_path, None) is None
    (tmp_path / "dict.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(TrainError, match="dict.txt: the character dict is empty"):
        read_new_dict(dataset_dict(tmp_path, None))
    res = CliRunner().invoke(main, ["train", V4, "--dataset", str(tmp_path), "--dict", str(tmp_path / "nope.txt")])
    assert res.exit_code == 2 and "nope.txt" in res.output
