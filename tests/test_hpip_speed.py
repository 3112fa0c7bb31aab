"""use_hpip times int8 against bf16 where the CPU computes bf16 natively, and takes bf16 unless int8 is measurably
faster (edgerec.hpip_speed): on an AMX Xeon bf16 was the faster of the two for all five models, on Zen 5 int8."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

import edgerec.hpip as hpip
from edgerec.engines import registry
from edgerec.engines.base import parse_device
from edgerec.hpip_speed import MARGIN, STORE_NAME, Verdict, int8_against_bf16
from edgerec.utils import cpu

from conftest import V4, install_relabelled_int8, linked_home

CPU = parse_device("cpu")


class FakeEngine:
    def __init__(self, seconds: float, log: list):
        self.seconds, self.log = seconds, log

    def infer(self, batch):
        self.log.append(batch.shape)
        time.sleep(self.seconds)
        return np.zeros((1, 40, 10), np.float32)

    def close(self):
        pass


def fake_kind(int8_s: float, bf16_s: float, opened: list):
    """The OpenVINO engine's kind with engines that take the given seconds per line."""
    import dataclasses

    def open_(path, spec, options, precision):
        opened.append((Path(path).name, precision))
        return FakeEngine(int8_s if precision == "int8" else bf16_s, [])

    return dataclasses.replace(registry.get("openvino"), open=open_)


@pytest.fixture()
def two_irs(tmp_path):
    """An int8 and an fp32 'IR' (their files are only keyed, never read here but for the height)."""
    out = {}
    for name in ("int8", "fp32"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.xml").write_text(name)
        (folder / "model.bin").write_bytes(b"\0")
        out[name] = folder / "model.xml"
    return out


@pytest.fixture()
def height_48(monkeypatch):
    from edgerec.zoo import export

    monkeypatch.setattr(export, "read_info", lambda xml: type("Info", (), {"input_height": 48})())


def test_the_slower_int8_is_measured_once_and_kept(two_irs, tmp_path, height_48):
    opened: list = []
    kind = fake_kind(0.004, 0.002, opened)
    values = {"cache_dir": tmp_path / "cache", "threads": 2}
    (tmp_path / "cache").mkdir()
    v = int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], values)
    assert not v.kept and not v.int8_wins and v.int8_ms > v.bf16_ms and v.height == 48
    assert sorted(opened) == [("model.xml", "bf16"), ("model.xml", "int8")]
    assert "measured now" in v.describe() and "48 x 320" in v.describe()
    stored = json.loads((tmp_path / "cache" / STORE_NAME).read_text())
    assert len(stored) == 1 and list(stored.values())[0]["int8_ms"] == round(v.int8_ms, 4)
    opened.clear()
    again = int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], values)
    assert opened == [] and again.kept and (again.int8_ms, again.bf16_ms) == (round(v.int8_ms, 4),
                                                                               round(v.bf16_ms, 4))
    assert "measured on this machine before" in again.describe()
    # a home prepared at one path and mounted at another (the files as they were) keeps its timing
    import shutil

    import edgerec.hpip_speed as hs

    moved = {}
    for name, xml in two_irs.items():
        for f in (xml, xml.with_suffix(".bin")):
            dest = tmp_path / "mnt" / Path(*f.parts[-4:])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
            moved[name] = dest.with_suffix(".xml")
    assert hs._key(kind, CPU, moved["int8"], moved["fp32"], values) == hs._key(kind, CPU, two_irs["int8"],
                                                                               two_irs["fp32"], values)
    # other settings, or a new int8 file, are another measurement
    int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {**values, "threads": 1})
    two_irs["int8"].with_suffix(".bin").write_bytes(b"\0\0")
    int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], values)
    assert len(opened) == 4 and len(json.loads((tmp_path / "cache" / STORE_NAME).read_text())) == 3


def test_a_faster_int8_wins_and_a_damaged_store_costs_a_measurement(two_irs, tmp_path, height_48):
    opened: list = []
    kind = fake_kind(0.001, 0.004, opened)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / STORE_NAME).write_text("{not json")
    v = int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {"cache_dir": str(tmp_path / "cache")})
    assert v.int8_wins and len(opened) == 2 and json.loads((tmp_path / "cache" / STORE_NAME).read_text())


def test_nothing_is_timed_where_nothing_can_be_kept(two_irs, tmp_path, height_48, caplog):
    """A timing at every start of a read-only kiosk could choose differently from one start to the next: there,
    and with cache=False, use_hpip keeps int8 (None) without timing."""
    opened: list = []
    kind = fake_kind(0.004, 0.001, opened)
    (tmp_path / "file").write_text("x")  # a folder that cannot be made or written
    with caplog.at_level(logging.INFO, logger="edgerec.hpip_speed"):
        assert int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"],
                                 {"cache_dir": tmp_path / "file" / "c"}) is None
        assert int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {}) is None
    assert opened == [] and "cannot be written" in caplog.text and "cache=False" in caplog.text


def test_a_timing_another_process_made_while_this_one_waited_is_read(two_irs, tmp_path, height_48, monkeypatch):
    import edgerec.hpip_speed as hs

    opened: list = []
    kind = fake_kind(0.004, 0.001, opened)
    answers = iter([None, Verdict(2.0, 1.0, 48, kept=True)])  # not there before the lock, there after it
    monkeypatch.setattr(hs, "_kept", lambda store, key: next(answers))
    v = int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {"cache_dir": tmp_path})
    assert v.kept and opened == []


def test_an_engine_that_fails_to_open_closes_the_one_opened(two_irs, tmp_path, height_48):
    import dataclasses

    closed = []

    class Closing(FakeEngine):
        def close(self):
            closed.append(True)

    def open_(path, spec, options, precision):
        if precision == "bf16":
            raise RuntimeError("no bf16 kernels")
        return Closing(0.0, [])

    kind = dataclasses.replace(registry.get("openvino"), open=open_)
    assert int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {"cache_dir": tmp_path}) is None
    assert closed == [True]


def test_an_engine_that_cannot_be_timed_leaves_int8(two_irs, tmp_path, height_48, caplog):
    import dataclasses

    def refuse(path, spec, options, precision):
        raise RuntimeError("Exception from src/core.cpp:1\nmore lines")

    kind = dataclasses.replace(registry.get("openvino"), open=refuse)
    with caplog.at_level(logging.WARNING, logger="edgerec.hpip_speed"):
        assert int8_against_bf16(kind, CPU, two_irs["int8"], two_irs["fp32"], {"cache_dir": tmp_path}) is None
    assert "could not time int8 against bf16" in caplog.text and "taking int8" in caplog.text


def test_the_margin_favours_bf16():
    assert Verdict(0.95, 1.0, 48, False).int8_wins and not Verdict(0.97, 1.0, 48, False).int8_wins
    assert MARGIN < 1


@pytest.mark.parametrize("verdict, native, want", [
    (Verdict(3.0, 2.5, 48, False), True, "bf16"),   # an AMX Xeon
    (Verdict(2.0, 3.0, 48, False), True, "int8"),   # Zen 5
    (None, True, "int8"),                           # could not be timed: as before
    (Verdict(3.0, 2.5, 48, False), False, "int8"),  # no native bf16: nothing to time
])
def test_use_hpip_takes_bf16_where_int8_is_not_faster(monkeypatch, tmp_path, verdict, native, want):
    calls = []
    monkeypatch.setattr(hpip, "int8_against_bf16", lambda *a: calls.append(a) or verdict)
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: native)
    monkeypatch.setattr(hpip, "installed_ir", lambda name, d, p: tmp_path / p / "model.xml")
    monkeypatch.setattr(hpip, "int8_report", lambda xml: {})
    choice, values, why = hpip.hpip_choice(registry.get("openvino"), CPU, V4, None, "fp32", {"threads": 2})
    assert choice == want and values == {}
    assert len(calls) == (1 if native else 0)
    if native:
        assert calls[0][2:] == (tmp_path / "int8" / "model.xml", tmp_path / "fp32" / "model.xml", {"threads": 2})
    if want == "bf16":
        assert "not clearly faster than bf16" in why and "3.00 ms in int8" in why
    elif verdict is not None and native:
        assert why.startswith("int8, the fastest installed") and "2.00 ms in int8" in why


def test_create_model_runs_bf16_when_the_timing_says_so(edgerec_home, tmp_path, monkeypatch, rendered):
    """The whole use_hpip path on any CPU: the timing (faked here) says bf16, and the model runs bf16 with the
    settings the timing was given, and says why."""
    from edgerec import create_model

    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    install_relabelled_int8(root)
    seen = []
    monkeypatch.setattr(hpip, "int8_against_bf16", lambda *a: seen.append(a) or Verdict(3.0, 2.0, 48, False))
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: True)
    monkeypatch.setattr(cpu, "require_native_bf16", lambda device="CPU": None)  # bf16 emulated where not native
    m = create_model(V4, use_hpip=True, threads=1, progress=False)
    assert m.precision == "bf16" and "not clearly faster than bf16" in m.config_summary
    kind, spec, int8_xml, fp32_xml, values = seen[0]
    assert kind.name == "openvino" and int8_xml == root / "int8" / "model.xml"
    assert fp32_xml.resolve() == (root / "fp32" / "model.xml").resolve()
    assert values["threads"] == 1 and values.get("cache_dir")
    assert m.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]


@pytest.mark.skipif(not cpu.has_native_bf16(), reason=f"no native bf16 on this CPU ({cpu.isa_summary()})")
def test_use_hpip_times_the_real_models(edgerec_home, tmp_path, monkeypatch, rendered):
    """The real timing on the real engines (int8 here is the fp32 IR labelled int8: which is faster is the CPU's
    business; that both were timed and the choice follows the verdict is this test's)."""
    from edgerec import create_model
    from edgerec.hpip_speed import int8_against_bf16 as real

    root = linked_home(edgerec_home, tmp_path, monkeypatch)
    install_relabelled_int8(root)
    seen = []
    monkeypatch.setattr(hpip, "int8_against_bf16", lambda *a: seen.append(real(*a)) or seen[-1])
    m = create_model(V4, use_hpip=True, progress=False)
    assert len(seen) == 1 and seen[0].int8_ms > 0 and seen[0].bf16_ms > 0
    assert m.precision == ("int8" if seen[0].int8_wins else "bf16")
    assert m.recognize(rendered[0][1])["rec_text"].strip() == rendered[0][0]
    create_model(V4, use_hpip=True, progress=False)
    assert seen[1].kept  # measured once: the second load reads it back
