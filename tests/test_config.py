"""Config files and flags: one loader that coerces, range-checks and names the key."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import ClassVar

import pytest
import yaml
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.config import (
    config_from_mapping,
    field_types,
    option,
    read_config_file,
    resolve_config,
)
from arenajudge.errors import ConfigError
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.transformer.config import PredictOptions, TransformerConfig
from conftest import synthetic_frame


@pytest.mark.parametrize(
    "values, message",
    [
        ({"n_estimators": "abc"}, "n_estimators: expected an integer, got 'abc'"),
        ({"n_estimators": 2.5}, "n_estimators: expected an integer, got 2.5"),
        ({"learning_rate": None}, "learning_rate: expected float, got null"),
        ({"learning_rate": True}, "learning_rate: expected a number, got True"),
        ({"learning_rate": "nan"}, "learning_rate: expected a finite number"),
        ({"learning_rate": 2.0}, r"learning_rate=2.0 is out of range; allowed: \(0, 1\]"),
        ({"holdout_share": 0.5}, r"holdout_share=0.5 is out of range; allowed: \[0, 0.5\)"),
        ({"leaves": 3}, "unknown config key.*leaves.*known keys: bagging_fraction"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_range(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(GBDTConfig, values, source="cfg.yaml")


def test_values_are_coerced_to_their_field_types():
    # YAML 1.1 reads 1e-3 as a string; 2.0 rounds is 2
    config = config_from_mapping(
        GBDTConfig, {"learning_rate": "1e-3", "n_estimators": 2.0, "encoder": None}
    )
    assert config.learning_rate == 0.001 and config.n_estimators == 2
    assert isinstance(config.n_estimators, int)


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".yaml", "learning_rate: 1e-3\nnum_leaves: 7\n"),
        (".toml", "learning_rate = 1e-3\nnum_leaves = 7\n"),
        (".json", '{"learning_rate": 0.001, "num_leaves": 7}'),
    ],
)
def test_yaml_toml_and_json_files(tmp_path, suffix, text):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(text)
    config = resolve_config(GBDTConfig, path, {})
    assert (config.learning_rate, config.num_leaves) == (0.001, 7)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "must hold a mapping"),
        ("a: [" * 2000, "nested too deeply|not valid YAML"),
        ("a: b: c", "is not valid YAML"),
    ],
)
def test_broken_config_files(tmp_path, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_config_file(path)


def test_flags_beat_the_file_and_the_file_beats_the_defaults(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("seed: 7\nnum_leaves: 9\n")
    config = resolve_config(GBDTConfig, path, {"num_leaves": 11})
    assert (config.seed, config.num_leaves, config.max_bin) == (7, 11, 255)


def test_every_transformer_field_is_reachable_from_a_file(tmp_path):
    changed = {
        "base": "/models/x",
        "max_length": 64,
        "prompt_share": 0.25,
        "epochs": 2,
        "max_steps": 5,
        "batch_size": 3,
        "grad_accum": 2,
        "lr": 3e-5,
        "weight_decay": 0.02,
        "warmup_ratio": 0.2,
        "schedule": "linear",
        "max_grad_norm": 0.5,
        "head_hidden": 8,
        "head_dropout": 0.2,
        "loss": "kl",
        "swap_augment": False,
        "symmetric": False,
        "val_fraction": 0.2,
        "eval_every": 3,
        "patience": 2,
        "checkpoint_dir": "/tmp/c",
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "lora_targets": "q_proj",
        "load_in": "16bit",
        "gradient_checkpointing": True,
        "merge_lora": False,
        "precision": "fp32",
        "device": "cpu",
        "seed": 3,
        "kind": "llm",
        "head": "tokens",
        "lora": True,
        "attn_implementation": "sdpa",
        "zero_shot": True,
        "prompt_format": "chat",
    }
    assert set(changed) == {f.name for f in fields(TransformerConfig)}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(changed))
    config = resolve_config(TransformerConfig, path, {})
    assert {f.name: getattr(config, f.name) for f in fields(config)} == changed


def _train(tmp_path, *extra):
    data = tmp_path / "train.csv"
    synthetic_frame(n=120).to_csv(data, index=False)
    return CliRunner().invoke(
        main, ["-v", "train", str(data), "--out", str(tmp_path / "m"), *map(str, extra)]
    )


def test_a_seed_in_the_config_file_survives_without_seed_flag(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "seed: 5\nn_estimators: 20\nholdout_share: 0.25\n"
        "early_stopping_rounds: 5\nembedding_dim: 4\n"
    )
    result = _train(tmp_path, "--config", config, "--num-leaves", "5")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]
    assert (saved["seed"], saved["num_leaves"], saved["n_estimators"]) == (5, 5, 20)


def test_config_files_work_for_transformer_backends(tmp_path):
    pytest.importorskip("transformers", reason="needs the transformers extra")
    config = tmp_path / "cfg.toml"
    config.write_text('base = "/nonexistent/model"\nepochs = 2\n')
    result = _train(tmp_path, "--backend", "siamese", "--config", config)
    # the file's keys are accepted; the missing base directory is the one error
    assert result.exit_code == 2
    assert "--base /nonexistent/model: no such directory" in result.stderr


def test_a_flag_of_the_other_backend_is_refused(tmp_path):
    result = _train(tmp_path, "--num-leaves", "5", "--backend", "siamese")
    assert result.exit_code == 2
    assert "--num-leaves apply to --backend gbdt only" in result.stderr


@dataclass(frozen=True)
class _HaloConfig:
    """The config of a backend the registry does not have: its flags' heading and the
    error for its flags given to another backend must follow it."""

    cli_title: ClassVar[str] = "Halo model options"
    halo_radius: int = option(3, "Radius of the halo.", low=1)


class _HaloModel:
    config_class = _HaloConfig


@pytest.fixture
def halo_backend(monkeypatch):
    """A third trainable backend, ``halo``, in the registry's table."""
    from arenajudge.cli import settings
    from arenajudge.models import registry

    monkeypatch.setitem(registry._CLASSES, "halo", f"{__name__}:_HaloModel")
    monkeypatch.setattr(settings, "TRAINABLE", (*registry.TRAINABLE, "halo"))


def test_settings_groups_and_foreign_flag_errors_follow_the_config_classes(halo_backend):
    import click

    from arenajudge.cli.settings import (
        GroupedCommand,
        backend_settings_groups,
        check_backend_flags,
        config_options,
    )

    groups = backend_settings_groups()
    assert groups["Halo model options (--backend halo)"] is _HaloConfig
    assert groups["CPU model options (--backend gbdt)"] is GBDTConfig

    @click.command(cls=GroupedCommand)
    @config_options(groups, exclude=("kind",))
    def command(settings):
        click.echo(json.dumps(settings))

    help_text = CliRunner().invoke(command, ["--help"]).output
    halo_section = help_text.split("Halo model options (--backend halo):")[1]
    assert "--halo-radius" in halo_section
    with pytest.raises(ConfigError, match=r"^--halo-radius apply to --backend halo only$"):
        check_backend_flags("gbdt", {"halo_radius": 2})
    with pytest.raises(ConfigError, match=r"^--num-leaves apply to --backend gbdt only$"):
        check_backend_flags("halo", {"num_leaves": 5})


def test_config_flags_reach_the_command_as_the_settings_given():
    import click

    from arenajudge.cli.settings import GroupedCommand, config_options

    @click.command(cls=GroupedCommand)
    @config_options({"Transformer options": TransformerConfig}, exclude=("kind",))
    def command(settings):
        click.echo(json.dumps(settings, sort_keys=True))

    result = CliRunner().invoke(
        command,
        [
            "--base",
            "m",
            "--lr",
            "1e-4",
            "--load-in",
            "4bit",
            "--merge-lora",
            "--max-steps",
            "3",
            "--seed",
            "0",
        ],
    )
    # --seed 0 equals the default but was given: it counts
    assert json.loads(result.output) == {
        "base": "m",
        "load_in": "4bit",
        "lr": 1e-4,
        "max_steps": 3,
        "merge_lora": True,
        "seed": 0,
    }
    assert json.loads(CliRunner().invoke(command, []).output) == {}
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "Transformer options:" in help_text and "Peak learning rate" in help_text
    assert "[default: 512; x>=32]" in " ".join(help_text.split())
    bad = CliRunner().invoke(command, ["--epochs", "0"])
    assert bad.exit_code == 2 and "--epochs" in bad.output


# every config class a file can configure, and YAML 1.1's boolean spellings
CONFIG_CLASSES = (GBDTConfig, TransformerConfig, PredictOptions)
YAML_BOOLEANS = [
    word
    for base in ("on", "off", "yes", "no", "true", "false")
    for word in (base, base.title(), base.upper())
]


def _fields_where(predicate):
    return [
        (cls, spec.name) for cls in CONFIG_CLASSES for spec in fields(cls) if predicate(cls, spec)
    ]


WORD_FIELDS = _fields_where(lambda cls, spec: bool(spec.metadata.get("choices")))
BOOL_FIELDS = _fields_where(lambda cls, spec: field_types(cls)[spec.name][0] is bool)


@pytest.mark.parametrize("word", YAML_BOOLEANS)
@pytest.mark.parametrize(
    "cls, name", WORD_FIELDS, ids=[f"{cls.__name__}.{name}" for cls, name in WORD_FIELDS]
)
def test_a_yaml_boolean_spelling_is_the_word_for_a_word_valued_field(tmp_path, cls, name, word):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"{name}: {word}\n")
    choices = {f.name: f for f in fields(cls)}[name].metadata["choices"]
    if word in choices:  # e.g. `model_style: off`, as the docs write it
        assert getattr(resolve_config(cls, path, {}), name) == word
    else:  # refused as the word written, not as "expected a string, got False"
        with pytest.raises(ConfigError, match=f"{name}='{word}' is not one of"):
            resolve_config(cls, path, {})


@pytest.mark.parametrize("word", YAML_BOOLEANS)
@pytest.mark.parametrize(
    "cls, name", BOOL_FIELDS, ids=[f"{cls.__name__}.{name}" for cls, name in BOOL_FIELDS]
)
def test_a_yaml_boolean_spelling_is_a_boolean_for_a_boolean_field(tmp_path, cls, name, word):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"{name}: {word}\n")
    # an LLM with a token head, where every boolean may be on (zero_shot needs both)
    base = TransformerConfig(kind="llm", head="tokens") if cls is TransformerConfig else None
    assert getattr(resolve_config(cls, path, {}, base=base), name) is (
        word.lower() in ("on", "yes", "true")
    )


def test_model_style_off_in_a_yaml_file_trains_without_style_features(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "model_style: off\nn_estimators: 20\nholdout_share: 0.25\n"
        "early_stopping_rounds: 5\nembedding_dim: 4\n"
    )
    result = _train(tmp_path, "--config", config)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]
    assert saved["model_style"] == "off"
