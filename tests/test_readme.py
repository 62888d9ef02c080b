"""The README agrees with the code: the worker's option table lists exactly the options
of `--help`, with their defaults; the CLI section shows every command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from saga.admin.cli import COMMANDS
from saga.worker import build_parser

README = (Path(__file__).parents[1] / "README.md").read_text()


def section(title: str) -> str:
    """The text of the README section whose heading is *title*, up to the next heading."""
    start = README.index(f"### {title}\n")
    end = README.find("\n#", start + 1)
    return README[start:end]


def worker_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    return {a.option_strings[-1]: a for a in parser._actions
            if a.option_strings and a.option_strings[-1] != "--help"}


def test_the_worker_option_table_is_the_worker_s_options() -> None:
    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \|", section("... run the worker?"), re.M)
    documented = dict(rows)
    assert list(documented) == [o for o in worker_options()]  # all, in --help's order
    for option, action in worker_options().items():
        if isinstance(action.default, int | float) and not isinstance(action.default, bool):
            assert documented[option].split()[0] == f"{action.default:g}", option
        elif isinstance(action.default, str):
            assert documented[option].strip().lower() == action.default.lower(), option


def test_the_docs_say_what_a_second_signal_does() -> None:
    text = section("... run the worker?")
    assert "A second signal stops it at once and it exits 1" in text


def test_the_cli_section_shows_every_command() -> None:
    text = section("... inspect and steer sagas from the shell?")
    for spec in COMMANDS:
        assert f"pgsaga {spec.name} " in text, spec.name


def test_the_module_map_has_every_module_once() -> None:
    start = README.index("## How it works\n")
    block = README[README.index("```text\n", start) + 8:]
    block = block[:block.index("```\n")]
    listed = [line.split()[0] for line in block.splitlines() if line.strip()]
    package = Path(__file__).parents[1] / "saga"
    modules = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*.py")
                     if p.read_text().strip() and "static" not in p.parts)
    assert sorted(m for m in listed if m.endswith(".py")) == modules
    assert len(listed) == len(set(listed))


def test_the_observer_section_names_every_step_event_field() -> None:
    from dataclasses import fields

    from saga import StepEvent

    text = section("Anything else: step observers")
    named = text[:text.index("```")]
    for field in fields(StepEvent):
        assert f"`{field.name}`" in named, field.name
