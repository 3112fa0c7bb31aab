"""A model folder's ``inference.yml`` (PaddleX's: model name, input shape, charset), read once per file version
and checked to be what PaddleX writes: a mapping of Global / PreProcess / PostProcess, UTF-8, of a sane size."""

from __future__ import annotations

import functools
from pathlib import Path

from edgerec.errors import ModelError

MAX_YML_BYTES = 4 << 20  # a PaddleX inference.yml is a few KB, ~200 KB with an 18,000-character dict inside


def read_yml(folder: Path) -> dict | None:
    """A model folder's ``inference.yml`` as a mapping, None when there is none; a ModelError naming it when it
    is not a readable YAML mapping. Parsed once per file version (libyaml's loader where installed)."""
    yml = folder / "inference.yml"
    try:
        st = yml.stat()
    except OSError:
        return None
    if not yml.is_file():
        raise ModelError(f"{yml}: not a regular file")
    if st.st_size > MAX_YML_BYTES:
        raise ModelError(f"{yml}: {st.st_size >> 20} MB, too large for a model's inference.yml "
                         f"(at most {MAX_YML_BYTES >> 20} MB)")
    return _parsed_yml(str(yml), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _parsed_yml(path: str, mtime_ns: int, size: int) -> dict:
    import yaml

    try:
        text = Path(path).read_bytes().decode("utf-8")
        data = yaml.load(text, Loader=yaml.CSafeLoader) if hasattr(yaml, "CSafeLoader") else yaml.safe_load(text)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text (PaddleX writes inference.yml in UTF-8)") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict)
                                             for k in ("Global", "PreProcess", "PostProcess")):
        raise ModelError(f"{path}: not a PaddleX inference.yml (a mapping with Global, PreProcess and "
                         "PostProcess sections)")
    return data
