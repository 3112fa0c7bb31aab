"""The CLI audit's findings, one test (or a few) each: --resume never changes a file it refuses, --save-dir
saves every result (tall WebP/JPEG, names alike, files already there, a folder named like a file), --resume from
another folder, field types in a results file, a FIFO as --output, --json with a non-UTF-8 name, and camera's
logs, truncated files, control characters and --save-dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgerec.cli import main
from edgerec.errors import EdgeRecError
from edgerec.results import ImageTooLargeError, TextRecResult, write_new
from edgerec.sinks.jsonl import JsonlSink, repair_and_read

from conftest import V4


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _line(**kw) -> str:
    rec = {"input_path": "a.png", "page_index": None, "rec_text": "t", "rec_score": 0.5, "error": None}
    rec.update(kw)
    return json.dumps(rec)


@pytest.fixture()
def lines_dir(tmp_path, rendered):
    """good.png and good.jpg (the same line), in tmp_path/in."""
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "good.png"), rendered[0][1])
    cv2.imwrite(str(d / "good.jpg"), rendered[0][1])
    return d


# ------------------------------------------------------------------ 1. --resume never changes a file it refuses
def _png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("content", [
    "png",
    b"line one\nlast line without a newline",
    b"no newline at all",
    (_line() + "\n").encode() + b"garbage after a good line",  # a tail that is not the start of a results line
    (_line() + "\n" + "not json\n" + _line(input_path="b.png")[:20]).encode(),  # a bad line before a torn one
    b"\0\0\0",
])
def test_resume_leaves_a_refused_file_exactly_as_it_was(tmp_path, rendered, content):
    victim = tmp_path / "victim.bin"
    data = _png_bytes(rendered[0][1]) if content == "png" else content
    victim.write_bytes(data)
    with pytest.raises(EdgeRecError, match=r"victim\.bin:\d+: not a results line"):
        JsonlSink(victim, resume=True)
    with pytest.raises(EdgeRecError, match="not a results line"):
        repair_and_read(victim)
    assert victim.read_bytes() == data


def test_resume_still_cuts_a_torn_line_of_an_edgerec_file(tmp_path):
    out = tmp_path / "r.jsonl"
    good = (_line() + "\n").encode()
    for tail in (b'{"input_path": "b.png", "page_in', b'{"inp', b'{"input_path": "b.png"\0\0\0'):
        out.write_bytes(good + tail)
        with JsonlSink(out, resume=True) as sink:
            assert sink.done == {("a.png", None)}
        assert out.read_bytes() == good


def test_cli_resume_on_a_png_keeps_it(v4, lines_dir, tmp_path):
    victim = tmp_path / "victim.png"
    data = (lines_dir / "good.png").read_bytes()
    victim.write_bytes(data)
    res = _cli("predict", str(lines_dir / "good.jpg"), "--model", V4, "--output", str(victim), "--resume", "--quiet")
    assert res.exit_code == 1 and f"{victim}:1: not a results line" in res.stderr
    assert "Traceback" not in res.output and victim.read_bytes() == data


# ------------------------------------------------------------------ 2. a picture too big for its format
def test_api_save_to_img_names_the_limit_for_a_file_and_falls_back_to_png_in_a_folder(tmp_path):
    wide = TextRecResult("w.webp", None, "abc", 0.9, input_img=np.full((48, 70000, 3), 255, np.uint8))
    for name, limit in (("w.jpg", "65500"), ("w.webp", "16383")):
        with pytest.raises(ImageTooLargeError) as err:
            wide.save_to_img(tmp_path / name)
        assert isinstance(err.value, ValueError) and isinstance(err.value, EdgeRecError)
        assert str(tmp_path / name) in str(err.value) and "70000x" in str(err.value) and limit in str(err.value)
        assert not (tmp_path / name).exists()
    written = wide.save_to_img(tmp_path / "vis")  # the folder form: the input's .webp cannot hold it, PNG can
    assert written == tmp_path / "vis" / "w_res.png"
    with Image.open(written) as im:
        assert im.format == "PNG" and im.size[0] == 70000
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["w_res.png"]


@pytest.mark.parametrize("name,shape", [("tall.webp", (16383, 100)), ("tall.jpg", (65500, 40))])
def test_save_dir_saves_a_tall_webp_or_jpeg_as_png_and_goes_on(v4, lines_dir, tmp_path, name, shape, caplog):
    tall = lines_dir / name
    assert cv2.imwrite(str(tall), np.full((*shape, 3), 255, np.uint8))
    out = tmp_path / "sd"
    res = _cli("predict", str(tall), str(lines_dir / "good.png"), "--model", V4, "--save-dir", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "encoding error" not in res.output
    assert sorted(p.name for p in out.iterdir()) == ["good_res.json", "good_res.png", "tall_res.json",
                                                       "tall_res.png"]
    assert "saved as PNG" in caplog.text  # a WARNING (on stderr outside pytest, which captures logging)


def test_any_failure_to_save_one_result_is_that_inputs_error(v4, lines_dir, tmp_path, monkeypatch):
    real = TextRecResult.img_bytes

    def picky(self, suffix, **kw):
        if self["input_path"].endswith(".jpg"):
            raise RuntimeError("the encoder gave up")
        return real(self, suffix, **kw)

    monkeypatch.setattr(TextRecResult, "img_bytes", picky)
    out = tmp_path / "sd"
    res = _cli("predict", str(lines_dir / "good.jpg"), str(lines_dir / "good.png"), "--model", V4, "--save-dir",
               str(out), "--quiet")
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("edgerec: error: ") and "good.jpg" in errors[0]
    assert "the encoder gave up" in errors[0]
    assert len(res.stdout.splitlines()) == 2  # both texts printed
    assert sorted(p.name for p in out.iterdir()) == ["good_2_res.json", "good_2_res.png"]


# ------------------------------------------------------------------ 3. --save-dir never loses a result silently
def test_inputs_with_the_same_stem_get_numbered_names(v4, tmp_path, rendered):
    coll = tmp_path / "coll"
    for rel in ("a/x.png", "a/x.jpg", "b/x.png"):
        (coll / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(coll / rel), rendered[0][1])
    out = tmp_path / "sd"
    res = _cli("predict", str(coll), "--model", V4, "--save-dir", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr and not res.stderr.strip()
    saved = {p.name: json.loads(p.read_text("utf-8"))["input_path"] for p in out.glob("*.json")}
    # the sorted walk: a/x.jpg, a/x.png, b/x.png
    assert saved == {"x_res.json": str(coll / "a/x.jpg"), "x_2_res.json": str(coll / "a/x.png"),
                     "x_3_res.json": str(coll / "b/x.png")}
    assert {p.name for p in out.iterdir()} >= {"x_res.jpg", "x_2_res.png", "x_3_res.png"}


def test_a_file_already_in_save_dir_is_kept_unless_overwrite(v4, lines_dir, tmp_path):
    out = tmp_path / "sd2"
    out.mkdir()
    (out / "good_res.json").write_text("USER", encoding="utf-8")
    args = ["predict", str(lines_dir / "good.png"), "--model", V4, "--save-dir", str(out), "--quiet"]
    res = _cli(*args)
    assert res.exit_code == 1 and "Hello World" in res.stdout
    assert str(out / "good_res.json") in res.stderr and "--overwrite" in res.stderr
    assert (out / "good_res.json").read_text("utf-8") == "USER" and not (out / "good_res.png").exists()
    res = _cli(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "good_res.json").read_text("utf-8"))["input_path"] == str(lines_dir / "good.png")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_folder_in_the_way_of_a_saved_file_costs_neither_file_and_is_named(v4, lines_dir, tmp_path):
    """Both files of a result are checked before either is written; the error names the target, not a temp file."""
    out = tmp_path / "sd3"
    (out / "good_res.png").mkdir(parents=True)
    res = _cli("predict", str(lines_dir / "good.png"), "--model", V4, "--save-dir", str(out), "--overwrite",
               "--quiet")
    assert res.exit_code == 1 and f"{out / 'good_res.png'}: a folder is in the way" in res.stderr, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good_res.png"] and ".tmp" not in res.stderr


def test_overwrite_needs_output_or_save_dir(tmp_path):
    res = _cli("predict", str(tmp_path), "--overwrite")
    assert res.exit_code == 1 and "--overwrite needs --output or --save-dir" in res.stderr


def test_api_explicit_path_still_overwrites(tmp_path):
    target = tmp_path / "mine.json"
    target.write_text("old", encoding="utf-8")
    TextRecResult("w.png", None, "abc", 0.9).save_to_json(target)  # the user named the file: PaddleX replaces it
    assert json.loads(target.read_text("utf-8"))["rec_text"] == "abc"


def test_write_new_never_replaces(tmp_path):
    target = tmp_path / "f.json"
    assert write_new(target, b"one") == target
    with pytest.raises(FileExistsError):
        write_new(target, b"two")
    assert target.read_bytes() == b"one" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ------------------------------------------------------------------ 4. --save-dir is always a folder
@pytest.mark.parametrize("name", ["sd3.json", "sd4.png"])
def test_save_dir_named_like_a_file_is_a_folder(v4, lines_dir, tmp_path, name):
    out = tmp_path / name
    res = _cli("predict", str(lines_dir / "good.png"), str(lines_dir / "good.jpg"), "--model", V4, "--save-dir",
               str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert out.is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["good_2_res.jpg", "good_2_res.json", "good_res.json",
                                                       "good_res.png"]


# ------------------------------------------------------------------ 5. --resume from another folder
def test_resume_from_another_folder_gives_every_input_once(v4, lines_dir, tmp_path, monkeypatch):
    work = lines_dir.parent
    monkeypatch.chdir(work)
    res = _cli("predict", "in/good.png", "in/good.jpg", "--model", V4, "--output", "outt/cwd.jsonl", "--quiet")
    assert res.exit_code == 0, res.output
    out = work / "outt" / "cwd.jsonl"
    rows = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert [r["input_path"] for r in rows] == ["in/good.png", "in/good.jpg"]  # as given, as PaddleX prints it
    assert all(r["cwd"] == str(work) for r in rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = _cli("predict", str(lines_dir / "good.png"), str(lines_dir / "good.jpg"), "--model", V4, "--output",
               str(out), "--resume")
    assert res.exit_code == 0, res.output
    assert "0 results written" in res.stderr and "2 already there" in res.stderr
    assert len(out.read_text("utf-8").splitlines()) == 2
    # and the other way round: absolute paths first, then relative ones from yet another folder
    monkeypatch.chdir(lines_dir)
    res = _cli("predict", "good.png", "../in/good.jpg", "--model", V4, "--output", str(out), "--resume", "--quiet")
    assert res.exit_code == 0 and len(out.read_text("utf-8").splitlines()) == 2


def test_resume_through_a_symlinked_folder_gives_every_input_once(v4, lines_dir, tmp_path, monkeypatch):
    """A tree reached through a link (a symlinked /home, an NFS mount point) is the same tree on resume."""
    from edgerec.sinks.stream import predict_to_jsonl

    link = tmp_path / "link"
    link.symlink_to(lines_dir.parent, target_is_directory=True)
    out = tmp_path / "r.jsonl"
    monkeypatch.chdir(link)  # os.getcwd() gives the resolved folder, as the "cwd" field then records
    first = predict_to_jsonl(v4, ["in/good.png"], str(out), progress=False)
    assert first.written == 1
    again = predict_to_jsonl(v4, [str(link / "in" / "good.png"), str(link / "in" / "good.jpg")], str(out),
                             resume=True, progress=False)
    assert again.skipped == 1 and again.written == 1
    assert len(out.read_text("utf-8").splitlines()) == 2


def test_a_results_file_without_cwd_resumes_against_the_current_folder(v4, lines_dir, tmp_path, monkeypatch):
    from edgerec.sinks.stream import predict_to_jsonl

    out = tmp_path / "old.jsonl"
    out.write_text(_line(input_path="in/good.png") + "\n", encoding="utf-8")  # written before "cwd" existed
    monkeypatch.chdir(lines_dir.parent)
    got = predict_to_jsonl(v4, ["in/good.png", "in/good.jpg"], str(out), resume=True, progress=False)
    assert got.skipped == 1 and got.written == 1
    assert [json.loads(x)["input_path"] for x in out.read_text("utf-8").splitlines()] == ["in/good.png",
                                                                                        "in/good.jpg"]


# ------------------------------------------------------------------ 6. field types in a results file
@pytest.mark.parametrize("fields,why", [
    ({"input_path": 5}, "input_path is 5"),
    ({"input_path": ["a"]}, "input_path is"),
    ({"page_index": "x"}, 'page_index is "x"'),
    ({"page_index": True}, "page_index is true"),
    ({"page_index": -1}, "page_index is -1"),
    ({"rec_text": None}, "rec_text is null"),
    ({"rec_score": "0.5"}, "rec_score is"),
    ({"error": 3}, "error is 3"),
    ({"cwd": "relative/dir"}, "cwd is"),
])
def test_a_line_with_a_wrong_type_is_refused_with_file_and_line(tmp_path, fields, why):
    out = tmp_path / "r.jsonl"
    data = (_line() + "\n" + _line(**fields) + "\n").encode()
    out.write_bytes(data)
    with pytest.raises(EdgeRecError, match="r.jsonl:2: not a results line") as err:
        JsonlSink(out, resume=True)
    assert why in str(err.value)
    assert out.read_bytes() == data


@pytest.mark.parametrize("raw", ["[1, 2]", '"a string"', '{"input_path": "a.png"}'])
def test_a_line_that_is_not_a_results_object_is_refused(tmp_path, raw):
    out = tmp_path / "r.jsonl"
    out.write_text(raw + "\n", encoding="utf-8")
    with pytest.raises(EdgeRecError, match="r.jsonl:1: not a results line"):
        JsonlSink(out, resume=True)


def test_cli_resume_with_a_wrong_type_is_one_line(v4, lines_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(_line(input_path=5) + "\n", encoding="utf-8")
    res = _cli("predict", str(lines_dir / "good.png"), "--model", V4, "--output", str(out), "--resume", "--quiet")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.strip() == (f"edgerec: error: {out}:1: not a results line written by edgerec (input_path is 5, "
                                  "not a string or null); nothing was changed in it; pass another --output file")


def test_a_null_input_path_reads_back_and_is_never_done(tmp_path):
    """An array's result (from Python) has no path: the line is edgerec's, but it matches no input."""
    from edgerec.sinks.stream import _key

    out = tmp_path / "r.jsonl"
    out.write_text(_line(input_path=None) + "\n" + _line(input_path="/x/a.png") + "\n", encoding="utf-8")
    with JsonlSink(out, resume=True) as sink:  # read back: the line is valid
        assert sink.done == {(None, None), ("/x/a.png", None)}
    with JsonlSink(out, resume=True, key=_key) as sink:  # predict --resume's identity: the array line matches nothing
        assert sink.done == {(os.path.realpath("/x/a.png"), None)}


# ------------------------------------------------------------------ 7. --output that is not a regular file
def _refused_within(fn, seconds: float, fifo: Path | None = None) -> BaseException | None:
    """Run ``fn`` in a thread: the exception it raised, failing the test if it blocks (a FIFO open)."""
    box: list[BaseException | None] = [None]

    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test
            box[0] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if fifo is not None:  # release the blocked open so the thread ends
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked for more than {seconds} s")
    return box[0]


@pytest.mark.parametrize("kw", [{}, {"overwrite": True}, {"resume": True}])
def test_a_fifo_as_output_is_refused_at_once(tmp_path, kw):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    exc = _refused_within(lambda: JsonlSink(fifo, **kw).close(), 10, fifo)
    assert isinstance(exc, EdgeRecError) and "is a named pipe, not a regular file" in str(exc)
    assert str(fifo) in str(exc)


def test_a_device_as_output_is_refused(tmp_path):
    with pytest.raises(EdgeRecError, match="/dev/null: is a character device"):
        JsonlSink("/dev/null", overwrite=True)


def test_cli_fifo_output_is_one_line(v4, lines_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    res = _cli("predict", str(lines_dir / "good.png"), "--model", V4, "--output", str(fifo), "--resume", "--quiet")
    assert res.exit_code == 1
    assert res.stderr.strip() == (f"edgerec: error: --output {fifo}: is a named pipe, not a regular file; give a "
                                  "file name such as results.jsonl")


# ------------------------------------------------------------------ minor: --json with a non-UTF-8 name
@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes in names")
def test_json_line_of_a_non_utf8_name_is_valid_utf8(v4, tmp_path, rendered):
    name = os.fsdecode(b"n\xff.png")
    path = os.path.join(str(tmp_path), name)
    cv2.imwrite(str(tmp_path / "x.png"), rendered[0][1])
    os.rename(tmp_path / "x.png", path)
    res = _cli("predict", path, "--model", V4, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout_bytes.decode("utf-8"))
    assert line["input_path"] == path and "\\udcff" in res.stdout


# ------------------------------------------------------------------ camera
def _video(path: Path, texts: list[str]) -> str:
    from edgerec.io.fonts import render_line

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 64))
    assert writer.isOpened()
    for text in texts:
        frame = np.full((64, 320, 3), 255, np.uint8)
        if text:
            line = render_line(text, height=48, font_kind="latin")
            frame[8:56, 8:8 + line.shape[1]] = line
        writer.write(frame)
    writer.release()
    return str(path)


def test_camera_save_dir_keeps_files_already_there_and_every_runs_events_unless_overwrite(v4, tmp_path):
    video = _video(tmp_path / "gate.avi", ["Gate 7"] * 3 + ["Gate 12"] * 3)
    out = tmp_path / "ev"
    first = _cli("camera", "--source", video, "--save-dir", str(out), "--model", V4)
    assert first.exit_code == 0, first.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame000001_roi0.json", "frame000001_roi0_res.png", "frame000004_roi0.json",
                     "frame000004_roi0_res.png"]
    (out / "frame000004_roi0.json").write_text("USER", encoding="utf-8")
    # a restart with the same folder (frame numbers start at 0 again): the second run's events get _2 names
    again = _cli("camera", "--source", video, "--save-dir", str(out), "--model", V4)
    assert again.exit_code == 0 and len(again.stdout.splitlines()) == 2, again.output
    assert sorted(p.name for p in out.iterdir()) == sorted(names + [
        "frame000001_roi0_2.json", "frame000001_roi0_2_res.png", "frame000004_roi0_2.json",
        "frame000004_roi0_2_res.png"])
    assert (out / "frame000004_roi0.json").read_text("utf-8") == "USER"
    assert json.loads((out / "frame000004_roi0_2.json").read_text("utf-8"))["rec_text"] == "Gate 12"
    forced = _cli("camera", "--source", video, "--save-dir", str(out), "--model", V4, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "frame000004_roi0.json").read_text("utf-8"))["frame_index"] == 4
    assert len(list(out.iterdir())) == 8


def test_camera_overwrite_needs_save_dir(tmp_path):
    res = _cli("camera", "--source", str(tmp_path / "x.avi"), "--overwrite")
    assert res.exit_code == 1 and "--overwrite needs --save-dir" in res.stderr


def test_camera_truncated_video_ends_with_a_warning(v4, tmp_path):
    video = Path(_video(tmp_path / "full.avi", [""] * 20))
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    res = _cli("camera", "--source", str(cut), "--model", V4)
    assert res.exit_code == 0, res.output  # the end of a file is not an error (docs/camera-and-kiosk.md)
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edgerec camera: warning: {cut}: the video ended after ") and "of the 20 frames" in last
    full = _cli("camera", "--source", str(video), "--model", V4)
    assert full.exit_code == 0 and "warning" not in full.stderr


def test_camera_error_lines_escape_control_characters(tmp_path):
    name = str(tmp_path / "bad\nname\x1b[2J.mp4")
    res = _cli("camera", "--source", name)
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "\x1b" not in res.stderr
    assert "bad\\nname\\x1b[2J.mp4: no such video file" in res.stderr


def test_camera_keeps_ffmpegs_own_log_lines_off_stderr(tmp_path):
    """A damaged .mp4 (no moov atom): one edgerec line, none of FFmpeg's (a fresh process: FFmpeg reads its log
    level once, when OpenCV first opens a video)."""
    broken = tmp_path / "broken.mp4"
    writer = cv2.VideoWriter(str(broken), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 32))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write mp4")
    for _ in range(10):
        writer.write(np.zeros((32, 64, 3), np.uint8))
    writer.release()
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, "-m", "edgerec.cli", "camera", "--source", str(broken)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"edgerec: error: {broken}: cannot open this video source (is it connected, "
                                   "readable and not in use?)")


def test_the_console_script_ignores_a_late_ctrl_c_once_its_command_is_done(monkeypatch):
    """A Ctrl-C while the interpreter shuts down (thread joins, progress bars) printed a traceback and exited 0."""
    from edgerec import cli

    seen = []
    monkeypatch.setattr(cli, "main", lambda: (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr(cli, "ignore_late_interrupts", lambda: seen.append("ignored"))
    # never the real one here: calls given up on by earlier tests in this process would make it os._exit pytest
    monkeypatch.setattr(cli, "exit_if_stuck", lambda code: seen.append(f"exit_if_stuck {code}"))
    with pytest.raises(SystemExit):
        cli.run()
    assert seen == ["ignored", "exit_if_stuck 0"]


def test_an_empty_output_or_model_name_is_refused_by_report_and_train(tmp_path):
    res = _cli("report", "--models", V4, "--dataset", str(tmp_path), "--output", "")
    assert res.exit_code == 1 and "--output: give a folder name" in res.stderr
    (tmp_path / "ds").mkdir()
    for args in (["train", "", "--dataset", str(tmp_path / "ds")],
                 ["train", V4, "--dataset", str(tmp_path / "ds"), "--output", " "]):
        res = _cli(*args)
        assert res.exit_code == 1 and "not an empty one" in res.stderr, res.output


def test_resume_with_another_model_or_width_option_is_refused_and_changes_nothing(v4, lines_dir, tmp_path):
    """Each line records what read it; a resume with something else would mix two readers' texts in one file."""
    out = tmp_path / "r.jsonl"
    first = _cli("predict", str(lines_dir / "good.png"), "--model", V4, "--output", str(out), "--quiet")
    assert first.exit_code == 0, first.output
    assert json.loads(out.read_text("utf-8").splitlines()[0])["model"] == f"{V4} fp32"
    before = out.read_bytes()
    res = _cli("predict", str(lines_dir), "--model", V4, "--min-width", "160", "--output", str(out), "--resume",
               "--quiet")
    want = f"its lines were read by {V4} fp32; this run reads with {V4} fp32 min_width=160"
    assert res.exit_code == 1 and want in res.stderr, res.stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize("args, code, match", [
    (["predict", "samples/", "--address", "auto"], 1, "--address names the Ray cluster for --ray"),
    (["quantize"], 2, "give a model NAME or --model-dir"),
    (["export"], 2, "give a model NAME or --model-dir"),
    (["evaluate", "--dataset", "."], 2, "give a model NAME or --model-dir"),
])
def test_option_combinations_that_mean_nothing_are_refused(args, code, match):
    """Before any model loads: an option that would be ignored, a command without its model (usage: status 2)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == code and match in res.output, res.output


def test_log_lines_name_who_says_them_and_telemetry_noise_waits_for_v():
    """A library logging through the root logger (OpenVINO's telemetry, on a read-only home folder) is named as
    itself, never prefixed 'edgerec:', and its start-up noise shows only with -v."""
    import logging

    from edgerec.cli import _Said

    def record(name, path, msg):
        return logging.LogRecord(name, logging.WARNING, path, 1, msg, None, None)

    tele = record("root", "/v/lib/python3.11/site-packages/openvino_telemetry/main.py", "Could not create directory")
    assert _Said().format(tele) == "openvino_telemetry: Could not create directory"
    assert not _Said.quiet_telemetry(tele)
    own = record("edgerec.api", "/w/edgerec/api.py", "int8: unknown")
    assert _Said().format(own) == "edgerec: int8: unknown" and _Said.quiet_telemetry(own)
    assert _Said().format(record("urllib3.connectionpool", "/x.py", "retry")) == "urllib3.connectionpool: retry"
