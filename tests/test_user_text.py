"""What framefill says names only what its user can see: no issue of the project's tracker, no folder of the machine
it was developed on (``../shared/data/val`` exists only beside a development checkout).

Checked: the package's source (every error, help text, ``info`` line and docstring), the READMEs that install with
it (README.md is the wheel's description, weights/README.md package data), and the shipped weights' metadata, which
``framefill info`` prints. The patterns are tools/stamp_weights.py's, which refuses to write such metadata.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from framefill.checkpoint import read_metadata
from framefill.models import architectures, default_weights

ROOT = Path(__file__).resolve().parents[1]


def _stamp_weights():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("stamp_weights", ROOT / "tools" / "stamp_weights.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


STAMP = _stamp_weights()


def findings(text: str, patterns: list[re.Pattern[str]]) -> list[str]:
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m[0]!r}" for p in patterns for m in p.finditer(text)]


@pytest.mark.parametrize("path", sorted((ROOT / "framefill").rglob("*.py")), ids=lambda p: p.name)
def test_the_package_names_no_issue_and_no_development_path(path: Path) -> None:
    found = findings(path.read_text(), [STAMP.ISSUE, STAMP.DEV_PATH])
    assert not found, f"{path.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize("name", ["README.md", "weights/README.md"])
def test_the_readmes_name_no_issue_and_no_folder_beside_the_checkout(name: str) -> None:
    """The READMEs' commands may write to /tmp or runs/ (the reader's own folders); the data is named by what it is
    (TRAIN, VAL: weights/README.md, "Data"), not by where it lay on the development machine."""
    found = findings((ROOT / name).read_text(), [STAMP.ISSUE, STAMP.SHARED])
    assert not found, f"{name}: {found}"


def test_the_check_finds_what_it_is_for() -> None:
    for text in ("36 clips of ../shared/data/train/videos", "see issue 15", "issue #28", "/tmp/framefill_compare/x",
                 "packed into .gpu/data", "/work/shared/data/val", "shared/tools/peers"):
        assert STAMP.unfit(text), text
    for text in ("the SAM 2 demo gallery (Apache-2.0)", "weights/README.md, 'Data'", "weights/film.safetensors",
                 "Stream #0:1", "a 1/2-resolution flow", "../<gt>/<folder>/ (Middlebury's own split)", "PR curves"):
        assert STAMP.unfit(text) is None, text


def test_stamping_refuses_development_paths_and_keeps_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import save_tiny_film

    from framefill.checkpoint import load_safetensors, save_safetensors

    path = save_tiny_film(tmp_path / "w.safetensors")
    tensors, meta = load_safetensors(path)
    save_safetensors(path, tensors, {**meta, "quality": json.dumps({"protocol": "x", "stride1": {"psnr": 30.0}}),
                                     "training_data": "clips of ../shared/data/train/videos"})
    before = path.read_bytes()
    monkeypatch.setattr("sys.argv", ["stamp_weights.py", str(path)])
    with pytest.raises(SystemExit, match="'training_data' field names '../shared'.*give --data TEXT"):
        STAMP.main()
    assert path.read_bytes() == before
    monkeypatch.setattr("sys.argv", ["stamp_weights.py", str(path), "--data", "the SAM 2 demo gallery (Apache-2.0)"])
    STAMP.main()
    meta = read_metadata(path)
    assert json.loads(meta["quality"]) == {"protocol": STAMP.PROTOCOL, "stride1": {"psnr": 30.0}}  # figures kept
    assert meta["training_data"] == "the SAM 2 demo gallery (Apache-2.0)"
    assert all(STAMP.unfit(v) is None for v in meta.values())


def test_the_shipped_weights_metadata_names_no_issue_and_no_development_path() -> None:
    shipped = [default_weights(a) for a in architectures() if default_weights(a).exists()]
    assert shipped
    found = {f"{p.name} {key}": what for p in shipped for key, value in read_metadata(p).items()
             if (what := STAMP.unfit(value))}
    assert not found, found
