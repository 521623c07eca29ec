"""Every flag of every command line has a help text a researcher can use: config fields take
theirs from the docstring under the field (required), and no text is a bare name."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
from absl import flags
from cli_support import REPO, subprocess_env

from experiment.command_line import define_config_flags, field_help_texts


@dataclasses.dataclass(frozen=True)
class _Base:
    fh_alpha: float = 0.5
    """Weight α of the thing (paper: 0.5)."""
    fh_beta: int = 3
    """Steps of the other thing,
    over two lines."""
    fh_gamma: int = 1  # A comment is not a help text.


@dataclasses.dataclass(frozen=True)
class _Child(_Base):
    fh_beta: int = 4
    """The child's own text for beta."""
    fh_gamma: int = 2
    """Now documented by the child."""
    fh_delta: bool = False
    """Only the child has this switch."""


def test_help_texts_are_the_docstrings_under_the_fields_and_subclasses_override():
    assert field_help_texts(_Base) == {
        "fh_alpha": "Weight α of the thing (paper: 0.5).",
        "fh_beta": "Steps of the other thing, over two lines.",
    }
    assert field_help_texts(_Child) == {
        "fh_alpha": "Weight α of the thing (paper: 0.5).",
        "fh_beta": "The child's own text for beta.",
        "fh_gamma": "Now documented by the child.",
        "fh_delta": "Only the child has this switch.",
    }


def test_config_without_a_help_text_defines_no_flag_and_names_the_field():
    with pytest.raises(TypeError, match=r"_Base fields without a help text: fh_gamma;"):
        define_config_flags(_Base)
    assert "fh_alpha" not in flags.FLAGS


def test_config_flags_carry_the_help_text_and_the_default():
    define_config_flags(_Child, defaults={"fh_beta": 7})
    try:
        assert flags.FLAGS["fh_beta"].help == "The child's own text for beta."
        assert flags.FLAGS["fh_beta"].default == 7
        assert flags.FLAGS["fh_delta"].help == "Only the child has this switch."
        assert flags.FLAGS["fh_alpha"].default == 0.5
    finally:
        for field in dataclasses.fields(_Child):
            delattr(flags.FLAGS, field.name)


# Prints {flag: help} of every flag a command-line module defines (absl's own left out).
_DUMP_FLAGS = """
import importlib, json, sys
from absl import flags
importlib.import_module(sys.argv[1])
print(json.dumps({
    flag.name: flag.help
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
    if not module.startswith("absl")
    for flag in module_flags
}))
"""

SCRIPTS = sorted(
    f"agents.{path.parent.name}.{path.stem}"
    for pattern in ("agents/*/run_atari.py", "agents/*/eval_agent.py")
    for path in REPO.glob(pattern)
)


def _is_trivial(name: str, text: str) -> bool:
    words = re.findall(r"[^\W_]+", text.lower())
    name_words = name.lower().split("_")
    return (
        len(words) < 5
        or words == name_words
        or re.fullmatch(r"\w+\.\w+\.?", text.strip()) is not None  # "R2d2Config.discount"
    )


def test_trivial_help_texts_are_recognised():
    assert _is_trivial("discount", "R2d2Config.discount")
    assert _is_trivial("num_envs", "Environments stepped together.")
    assert _is_trivial("batch_size", "batch size")
    assert not _is_trivial("discount", "Discount γ per agent step (R2D2 paper: 0.997).")


def test_every_agent_has_its_scripts_checked():
    for agent in ("dqn", "r2d2"):
        assert f"agents.{agent}.run_atari" in SCRIPTS and f"agents.{agent}.eval_agent" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_of_every_script_has_a_real_help_text(script):
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_FLAGS, script],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    helps = json.loads(result.stdout.strip().splitlines()[-1])
    assert "environment_name" in helps and "seed" in helps
    trivial = {name: text for name, text in helps.items() if not text or _is_trivial(name, text)}
    assert not trivial, trivial


def test_helpfull_prints_the_config_help_texts():
    result = subprocess.run(
        [sys.executable, "-m", "agents.r2d2.run_atari", "--helpfull"],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]  # absl's exit code after help
    text = " ".join(result.stdout.split())
    assert "--discount: Discount γ per agent step (R2D2 paper: 0.997)." in text
    assert "--replay_ratio: Samples learned per sample inserted" in text
