"""Build ``dist/ccxray.pyz``: ccxray, h11 and wsproto in one file for machines without pip.

``python tools/build_zipapp.py`` takes h11 and wsproto from the packages
installed next to this Python (the project's venv), or with ``--wheels DIR``
from wheels fetched beforehand (``pip download h11 wsproto -d DIR``), so a
build needs no network. Their versions go into ``ccxray/_bundle.json``,
which ``python3 ccxray.pyz --version`` prints.

The archive is reproducible: entries sorted by name, every timestamp fixed
to 1980-01-01, fixed permissions and compression, no build time or path
recorded, so two builds from the same tree and wheels are byte-identical
(the SHA-256 printed at the end can be compared across machines).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("h11", "wsproto")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = ("import sys\n\nfrom ccxray.cli import main\nfrom ccxray.launch import exit_like\n\n"
        "exit_like(main(sys.argv[1:]))\n")


def _wanted(relative: str) -> bool:
    return "__pycache__" not in relative and not relative.endswith((".pyc", ".pyo"))


def ccxray_files() -> Iterator[tuple[str, bytes]]:
    for path in sorted((ROOT / "ccxray").rglob("*")):
        name = path.relative_to(ROOT).as_posix()
        if path.is_file() and _wanted(name) and not name.endswith("_bundle.json"):
            yield name, path.read_bytes()


def ccxray_version() -> str:
    text = (ROOT / "ccxray" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'__version__ = "([^"]+)"', text)
    if not found:
        raise SystemExit("build_zipapp: no __version__ in ccxray/__init__.py")
    return found.group(1)


def installed(name: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(version, files) of an installed distribution: its package and its licence."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError as exc:
        raise SystemExit(f"build_zipapp: {name} is not installed here (activate the venv, "
                         f"or pass --wheels DIR after `pip download h11 wsproto -d DIR`)") from exc
    files = []
    for entry in dist.files or []:
        rel = entry.as_posix()
        if rel.startswith(f"{name}/") and _wanted(rel):
            files.append((rel, Path(str(dist.locate_file(entry))).read_bytes()))
        elif ".dist-info/" in rel and Path(rel).name.upper().startswith(("LICENSE", "COPYING")):
            files.append((f"licenses/{name}-{Path(rel).name}", Path(str(dist.locate_file(entry))).read_bytes()))
    return dist.version, files


def from_wheel(name: str, wheels: Path) -> tuple[str, list[tuple[str, bytes]]]:
    """(version, files) from ``name-VERSION-*.whl`` in ``wheels`` (the newest if several)."""
    found = sorted(wheels.glob(f"{name}-*.whl"))
    if not found:
        raise SystemExit(f"build_zipapp: no {name} wheel in {wheels}")
    wheel = found[-1]
    version = wheel.name.split("-")[1]
    files = []
    with zipfile.ZipFile(wheel) as zf:
        for rel in zf.namelist():
            if rel.startswith(f"{name}/") and _wanted(rel) and not rel.endswith("/"):
                files.append((rel, zf.read(rel)))
            elif ".dist-info/" in rel and Path(rel).name.upper().startswith(("LICENSE", "COPYING")):
                files.append((f"licenses/{name}-{Path(rel).name}", zf.read(rel)))
    return version, files


def entries(wheels: Path | None) -> list[tuple[str, bytes]]:
    """Every archive member, sorted by name."""
    members = dict(ccxray_files())
    bundle = {"ccxray": ccxray_version()}
    for name in BUNDLED:
        version, files = from_wheel(name, wheels) if wheels else installed(name)
        bundle[name] = version
        members.update(files)
    members["ccxray/_bundle.json"] = (json.dumps(bundle, indent=2, sort_keys=True) + "\n").encode()
    members["__main__.py"] = MAIN.encode()
    return sorted(members.items())


def write_archive(out: Path, members: list[tuple[str, bytes]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(SHEBANG)
        with zipfile.ZipFile(fh, "w") as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name, FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, whatever machine builds it
                info.external_attr = 0o644 << 16
                zf.writestr(info, data, compresslevel=9)
    tmp.chmod(0o755)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/ccxray.pyz (ccxray + h11 + wsproto).")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "ccxray.pyz", help="where to write it")
    parser.add_argument("--wheels", type=Path, help="take h11/wsproto from the wheels in this directory")
    ns = parser.parse_args(argv)
    members = entries(ns.wheels)
    write_archive(ns.out, members)
    digest = hashlib.sha256(ns.out.read_bytes()).hexdigest()
    bundle = json.loads(dict(members)["ccxray/_bundle.json"])
    print(f"{ns.out}: {ns.out.stat().st_size} bytes, sha256 {digest}")
    print("bundled: " + ", ".join(f"{name} {version}" for name, version in sorted(bundle.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
