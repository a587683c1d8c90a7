import pytest

from tl.errors import UsageError
from tl.training.config import DEFAULTS, load_recipe, resolve


def test_precedence_cli_over_recipe_over_task_defaults(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('epochs = 2\nlr = 1e-4\nbatch-size = 16\nmodel = "minilm"\n')
    values = load_recipe(recipe)
    config = resolve({"epochs": 5, "lr": None}, values, {"lr": 3e-5, "max_length": 64, "epochs": 9})
    assert config.epochs == 5  # CLI
    assert config.lr == 1e-4  # recipe
    assert config.batch_size == 16  # recipe, dashed key
    assert config.max_length == 64  # task default
    assert config.weight_decay == DEFAULTS["weight_decay"]  # tl default


def test_shipped_recipes_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "recipes"
    classic = load_recipe(root / "imdb.toml")
    assert classic == {**classic, "model": "bert-base-uncased", "dataset": "imdb", "max_length": 128,
                       "lr": 2e-5, "batch_size": 32, "epochs": 3}
    quick = load_recipe(root / "quickstart.toml")
    assert (quick["model"], quick["dataset"], quick["epochs"]) == ("minilm", "rotten_tomatoes", 1)


@pytest.mark.parametrize("text, match", [
    ("epoch = 3\n", "unknown key 'epoch'"),
    ("epochs = \n", "not valid TOML"),
    ("epochs = 0\n", "epochs must be > 0"),
    ('precision = "fp8"\n', "precision must be one of"),
    ('lr = "fast"\n', "lr must be a number"),
])
def test_bad_recipes(tmp_path, text, match):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(UsageError, match=match):
        resolve({}, load_recipe(recipe), {})


def test_missing_recipe(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
