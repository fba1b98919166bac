"""The config parser on generated files: it ends in a config or in one ConfigError that names the problem, within
a bound, and where stock supervisord 4.3 reads the same file the two agree (tests/config_oracle.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load
from tests.config_oracle import BASE, ENV, JUNK, NODE, compare_with_stock
from tests.fuzz.agent_strategies import ConfigTree, config_trees

# Seconds one parse may take on a loaded 2-core machine; the configs here are a few hundred bytes.
PARSE_BOUND = 2.0


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """One directory for every example (a function-scoped tmp_path is not reset between examples); the parsers
    resolve relative paths against the current directory, as supervisord does."""
    path = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(cwd)
        shutil.rmtree(path, ignore_errors=True)


def write_tree(root: Path, tree: ConfigTree) -> str:
    for entry in root.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for name, text in tree.includes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    main = root / "supervisord.conf"
    main.write_text(tree.main)
    return str(main)


def parse(path: str) -> ConfigError | None:
    """Load `path`; the ConfigError it raised, if any. Any other exception fails the test."""
    started = time.monotonic()
    try:
        load(path, environ=ENV, host_node_name=NODE)
    except ConfigError as exc:
        return exc
    finally:
        assert time.monotonic() - started < PARSE_BOUND
    return None


def check_error(exc: ConfigError) -> None:
    """One line that says what is wrong and where: the section (and the option, when one is to blame), or the
    line of a file that is not INI, or the file that cannot be used at all."""
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    assert exc.section or exc.line or "[supervisord]" in text or "config file" in text, text
    if exc.option:
        assert exc.section and repr(exc.option) in text, text


# Two parses cost a few milliseconds: four times the profile's examples (600 in ci).
@settings(max_examples=4 * settings.default.max_examples)
@given(config_trees())
@example(ConfigTree("[supervisord]\nidentifier=%(host_node_name)s\n"))  # stock refuses: not known there
@example(ConfigTree("[supervisord]\n[program:p]\ncommand=x\nnumprocs=1001\nprocess_name=%(process_num)s\n"))
def test_generated_configs_agree_with_stock(workdir, tree):
    path = write_tree(workdir, tree)
    error = parse(path)
    if error is not None:
        check_error(error)
    event(compare_with_stock(path))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The every-section sample with a few fragments inserted, removed or replaced."""
    text = list(BASE)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text) - 1))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            text.insert(pos, draw(st.sampled_from(JUNK)))
        elif action == "delete":
            del text[pos:pos + draw(st.integers(1, 12))]
        else:
            text[pos] = draw(st.sampled_from(JUNK))
    return "".join(text)


@given(st.one_of(mutated(), st.text(max_size=300), st.binary(max_size=300)))
def test_any_bytes_give_a_config_or_one_config_error(workdir, content):
    (workdir / "x.inc").write_text("[program:inc]\ncommand=x\n")
    path = workdir / "s.conf"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    error = parse(str(path))
    if error is not None:
        check_error(error)
