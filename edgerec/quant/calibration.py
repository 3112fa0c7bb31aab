"""Calibration crops for INT8 quantization: rendered from a seeded recipe, or taken from the user's own data.

Rendered lines cover what NNCF needs to see: the activation ranges of real text lines. So the recipe varies
fonts (all from installed packages), sizes, colours, backgrounds, blur, noise, JPEG artefacts, slight
rotation and low resolution, and spreads the line lengths over the widths the runtime uses (320 to ~2000
input pixels). The text comes from the model's own charset (so every language is covered) mixed with real
English prose from the Python docs (``pydoc_data``) and numbers, dates, prices and codes.
The same seed gives the same images.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgerec.data.dataset import LIST_FILES, find_list_file, read_labelled, resolve_folder
from edgerec.errors import InputError
from edgerec.io.inputs import load_image

PROGRESS_MIN = 500  # lines: fewer are rendered or read (a few seconds) without a progress bar


@dataclass(frozen=True)
class RenderRecipe:
    """How rendered calibration lines vary. The defaults are the recipe `edgerec quantize` uses."""

    min_chars: int = 2
    max_chars: int = 40
    min_font_px: int = 18
    max_font_px: int = 44
    p_dark_background: float = 0.25
    p_blur: float = 0.3
    p_noise: float = 0.5
    p_jpeg: float = 0.5
    p_low_res: float = 0.25
    max_rotation_deg: float = 1.5
    p_latin_text: float = 0.35   # share of lines from English prose (scripts the model reads anyway)
    p_numbers: float = 0.15      # dates, prices, phone numbers, codes


def _font_files() -> tuple[list[Path], list[Path]]:
    """(latin fonts, CJK-capable fonts) shipped by matplotlib and mplfonts."""
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    latin = sorted(p for p in ttf.glob("DejaVu*.ttf") if "Display" not in p.name)
    cjk: list[Path] = []
    spec = importlib.util.find_spec("mplfonts")
    if spec and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "fonts"
        cjk = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".otf", ".ttf"))
    return latin, cjk


@functools.lru_cache(maxsize=16)
def _coverage(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap() or {})


@functools.lru_cache(maxsize=128)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=1)
def _english_words() -> list[str]:
    from pydoc_data import topics

    text = " ".join(topics.topics.values())
    return [w for w in text.split() if w.isprintable() and len(w) < 20]


def _encodable(c: str, codec: str) -> bool:
    try:
        c.encode(codec)
        return True
    except UnicodeEncodeError:
        return False


def is_common_char(c: str) -> bool:
    """Characters real text is made of: letters and digits of every script, with CJK limited to the common
    national sets (GB2312 level 1, JIS X 0208, Big5, KS X 1001), and ASCII punctuation. Rare symbols
    (arrows, maths, box drawing) stay out: a line of them measures nothing a user will see."""
    if c.isascii():
        return c.isprintable() and not c.isspace()
    cat = unicodedata.category(c)
    if not (cat.startswith("L") or cat.startswith("N")):
        return cat.startswith("P") and (_encodable(c, "gb2312") or _encodable(c, "shift_jis"))
    if "CJK UNIFIED" in unicodedata.name(c, ""):
        try:
            gb = c.encode("gb2312")
            if 0xB0 <= gb[0] <= 0xD7:  # GB2312 level 1: the 3755 most used hanzi
                return True
        except UnicodeEncodeError:
            pass
        return _encodable(c, "shift_jis") or _encodable(c, "big5")
    return True


def _number_text(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 1:
        return f"${rng.randint(0, 99999):,}.{rng.randint(0, 99):02d}"
    if kind == 2:
        return f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    if kind == 3:
        return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-") for _ in range(rng.randint(4, 14)))
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


class LineRenderer:
    """Renders calibration lines for one model charset with a seeded RNG."""

    def __init__(self, classes: list[str], seed: int = 0, recipe: RenderRecipe | None = None):
        self.recipe = recipe or RenderRecipe()
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        latin, cjk = _font_files()
        self.fonts = latin + cjk
        if not self.fonts:
            raise RuntimeError("no fonts found: matplotlib (and mplfonts for CJK) must be installed")
        charset = {c for c in classes[1:] if len(c) == 1 and c.isprintable() and not c.isspace()}
        common = {c for c in charset if is_common_char(c)}
        charset = common if len(common) >= 20 else charset
        self.latin_ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") <= charset
        # characters of the charset each font can draw; lines from the charset only use covered ones
        self.font_chars = {}
        for f in self.fonts:
            cov = _coverage(f)
            chars = sorted(c for c in charset if ord(c) in cov)
            if chars:
                self.font_chars[f] = chars
        if not self.font_chars:
            raise RuntimeError("no installed font covers this model's charset")

    def _text(self, font: Path) -> str:
        r, rng = self.recipe, self.rng
        roll = rng.random()
        if self.latin_ok and roll < r.p_numbers:
            return _number_text(rng)
        if self.latin_ok and roll < r.p_numbers + r.p_latin_text:
            words = _english_words()
            start = rng.randrange(len(words))
            text = ""
            for w in words[start:start + 30]:
                if len(text) + len(w) + 1 > rng.randint(r.min_chars, r.max_chars) and text:
                    break
                text = f"{text} {w}".strip()
            return text
        chars = self.font_chars[font]
        n = rng.randint(r.min_chars, max(r.min_chars, r.max_chars // 2))
        return "".join(rng.choice(chars) for _ in range(n))

    def render(self) -> tuple[np.ndarray, str]:
        """One BGR uint8 line and its text."""
        r, rng = self.recipe, self.rng
        font_path = rng.choice(list(self.font_chars))
        text = self._text(font_path)
        cov = _coverage(font_path)
        text = "".join(c for c in text if ord(c) in cov or c == " ").strip() or self.font_chars[font_path][0]
        size = rng.randint(r.min_font_px, r.max_font_px)
        font = _font(font_path, size)
        dark = rng.random() < r.p_dark_background
        bg = tuple(rng.randint(0, 70) if dark else rng.randint(170, 255) for _ in range(3))
        fg = tuple(rng.randint(190, 255) if dark else rng.randint(0, 80) for _ in range(3))
        left, top, right, bottom = font.getbbox(text)
        pad_x, pad_y = rng.randint(2, 14), rng.randint(2, 10)
        w, h = max(8, right - left + 2 * pad_x), max(8, bottom - top + 2 * pad_y)
        img = Image.new("RGB", (w, h), bg)
        ImageDraw.Draw(img).text((pad_x - left, pad_y - top), text, font=font, fill=fg)
        if r.max_rotation_deg and rng.random() < 0.5:
            img = img.rotate(rng.uniform(-r.max_rotation_deg, r.max_rotation_deg), expand=True, fillcolor=bg)
        arr = np.asarray(img)[:, :, ::-1].copy()
        if rng.random() < r.p_low_res:
            scale = rng.uniform(0.4, 0.8)
            small = cv2.resize(arr, (max(4, int(arr.shape[1] * scale)), max(4, int(arr.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            arr = cv2.resize(small, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_LINEAR)
        if rng.random() < r.p_blur:
            arr = cv2.GaussianBlur(arr, (0, 0), rng.uniform(0.4, 1.2))
        if rng.random() < r.p_noise:
            noise = self.np_rng.normal(0, rng.uniform(2, 12), arr.shape)
            arr = np.clip(arr.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if rng.random() < r.p_jpeg:
            ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(30, 90)])
            if ok:
                arr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return np.ascontiguousarray(arr), text


def _bar(total: int | None, desc: str, progress: bool | None):
    """A tqdm bar on stderr, as elsewhere in edgerec: ``progress`` None shows it on a terminal for at least
    PROGRESS_MIN lines; True / False force it on / off."""
    from tqdm import tqdm

    show = (sys.stderr.isatty() and (total is None or total >= PROGRESS_MIN)) if progress is None else progress
    return tqdm(total=total, desc=desc, unit="line", file=sys.stderr, leave=False, disable=not show,
                dynamic_ncols=True)


def iter_lines(classes: list[str], n: int, seed: int = 0, recipe: RenderRecipe | None = None
               ) -> Iterator[tuple[np.ndarray, str]]:
    """The ``n`` lines of :func:`render_lines`, one at a time (the same ones, in the same order)."""
    renderer = LineRenderer(classes, seed=seed, recipe=recipe)
    for _ in range(n):
        yield renderer.render()


def render_lines(classes: list[str], n: int, seed: int = 0, recipe: RenderRecipe | None = None, *,
                 progress: bool | None = False) -> list[tuple[np.ndarray, str]]:
    """``n`` seeded (BGR line, text) pairs, all in memory (about 40 KB a line): quantize's calibration and eval
    sets. ``progress``: see :func:`_bar`. To write many lines to disk use :func:`save_dataset` with
    :func:`iter_lines`, whose memory does not grow with ``n``."""
    with _bar(n, "rendering lines", progress) as bar:
        lines = []
        for line in iter_lines(classes, n, seed=seed, recipe=recipe):
            lines.append(line)
            bar.update(1)
    return lines


def dataset_sample(folder: str | Path, n: int | None = None, seed: int = 0, split: str = "train", *,
                   fallback: bool = True, purpose: str = "to read") -> list[tuple[Path, str]]:
    """Up to ``n`` (image path, label) pairs of a dataset folder's ``split`` list, a seeded random sample when it
    holds more; the images are not read yet, so a wrong folder fails at once.

    ``fallback``: without a list file of ``split``, take any labelled list (val.txt, label.txt, train.txt);
    otherwise that is an InputError naming the folder and the files it lacks. A list without a labelled line is
    an InputError naming the list file (``purpose`` says what the lines were for).
    """
    folder = resolve_folder(folder)
    names = LIST_FILES[split]
    missing = folder.is_dir() and all(not (folder / name).exists() and not (folder / name).is_symlink()
                                      for name in names)
    if missing and fallback:
        split = "any"  # no list file of that split: any labelled list will do
    elif missing:
        others = [name for name in LIST_FILES["any"] if name not in names and (folder / name).is_file()]
        raise InputError(folder, f"no {' or '.join(names)} in this dataset folder {purpose}"
                         + (f"; its {' and '.join(others)} is not used for that" if others else ""))
    list_file = find_list_file(folder, split)
    pairs = read_labelled(folder, split=split)  # a malformed line raises with file:line, as in training
    if not pairs:
        raise InputError(list_file, f"no labelled lines {purpose}")
    if n is not None and len(pairs) > n:
        pairs = random.Random(seed).sample(pairs, n)
    return pairs


def load_pairs(pairs: list[tuple[Path, str]], progress: bool | None = False) -> list[tuple[np.ndarray, str]]:
    """Decode the images of (path, label) pairs; an unreadable one is an InputError naming it."""
    with _bar(len(pairs), "reading crops", progress) as bar:
        lines = []
        for path, label in pairs:
            lines.append((load_image(path), label))
            bar.update(1)
    return lines


def dataset_lines(folder: str | Path, n: int | None = None, seed: int = 0, split: str = "train", *,
                  fallback: bool = True, purpose: str = "to read", progress: bool | None = False
                  ) -> list[tuple[np.ndarray, str]]:
    """Up to ``n`` labelled crops from a dataset folder, a seeded random sample when it holds more
    (:func:`dataset_sample`, then the images)."""
    return load_pairs(dataset_sample(folder, n, seed, split, fallback=fallback, purpose=purpose), progress)


# the folder of images save_dataset writes (beside the list file); any other name in its folder is the user's
IMAGES_DIR = "images"


def dataset_files(list_name: str = "train.txt") -> tuple[str, ...]:
    """What ``save_dataset`` writes in its folder (``atomic_dir``'s ``owned``): the images folder and the list."""
    return (f"{IMAGES_DIR}/[0-9][0-9][0-9][0-9][0-9].png", list_name)


def save_dataset(lines: Iterable[tuple[np.ndarray, str]], folder: str | Path, list_name: str = "train.txt", *,
                 total: int | None = None, progress: bool | None = False, what: str = "edgerec calibrate") -> Path:
    """Write lines as an MSTextRecDataset folder (images/NNNNN.png + list file), atomically.

    ``lines`` may be a generator (:func:`iter_lines`): each image is written to the temporary folder as it
    comes and dropped, so memory stays flat whatever the count. An existing ``folder`` is replaced only when it
    holds nothing but ``images/`` and the list file (an earlier set); anything else in it is an
    ``OutputExistsError`` before anything is written. ``total``: the count, for the progress bar.
    """
    from edgerec.utils.fs import atomic_dir

    folder = Path(folder)
    if total is None and hasattr(lines, "__len__"):
        total = len(lines)  # type: ignore[arg-type]
    with atomic_dir(folder, owned=dataset_files(list_name), what=what) as tmp, \
            _bar(total, f"writing {folder}", progress) as bar:
        (tmp / IMAGES_DIR).mkdir()
        with open(tmp / list_name, "w", encoding="utf-8", newline="\n") as listing:
            for i, (img, text) in enumerate(lines):
                if "\t" in text or "\n" in text or "\r" in text:
                    raise InputError(f"line {i + 1}", f"label {text[:40]!r} holds a tab or a line break, which a "
                                     "list file cannot hold")
                name = f"{IMAGES_DIR}/{i:05d}.png"
                ok, buf = cv2.imencode(".png", img)
                if not ok:
                    raise InputError(f"line {i + 1}", "cv2 could not encode the image as PNG")
                (tmp / name).write_bytes(buf.tobytes())
                listing.write(f"{name}\t{text}\n")
                bar.update(1)
    return folder
