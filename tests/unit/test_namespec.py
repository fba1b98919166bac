"""The host-prefixed namespec grammar that fleetctl and the controller share (controller/namespec.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetvisor.cli import patterns as cli_patterns
from fleetvisor.cli.client import CommandError
from fleetvisor.controller import namespec, selection
from fleetvisor.controller.namespec import Pattern, PatternError, parse, parse_all


@pytest.mark.parametrize("text, expected", [
    ("all", Pattern("*")), ("web-1", Pattern("web-1")), ("web-1:*", Pattern("web-1")),
    ("web-1:all", Pattern("web-1")), ("web-1:", Pattern("web-1")), ("*:app", Pattern("*", "app")),
    ("web-*:workers:*", Pattern("web-*", "workers:*")), ("web-1:g:n", Pattern("web-1", "g:n")),
    ("  web-1:app  ", Pattern("web-1", "app")),
])
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text, words", [
    ("", "an empty name is not a pattern"), ("   ", "an empty name is not a pattern"),
    (":app", "the node part is empty (use *:app for every node)"),
])
def test_malformed_patterns_say_why(text, words):
    with pytest.raises(PatternError) as info:
        parse(text)
    assert words in str(info.value)


def test_no_patterns_mean_everything():
    assert parse_all([]) == [Pattern("*")]
    assert parse_all(["a:x", "b"]) == [Pattern("a", "x"), Pattern("b")]


@pytest.mark.parametrize("node, exact", [("web-1", True), ("web-*", False), ("web-?", False), ("web-[12]", False)])
def test_a_node_without_glob_characters_is_exact(node, exact):
    assert Pattern(node).exact_node is exact


def test_node_globs():
    assert Pattern("web-*").matches_node("web-12") and not Pattern("web-*").matches_node("db-1")
    assert Pattern("web-[12]").matches_node("web-2") and not Pattern("web-[12]").matches_node("web-3")
    assert not Pattern("Web-1").matches_node("web-1")  # names are case-sensitive, as supervisord's


@pytest.mark.parametrize("spec, group, name, hit", [
    ("*", "anything", "at_all", True),
    ("app", "app", "app", True),               # a bare name is the group of that name
    ("app", "workers", "app", False),
    ("work*", "workers", "worker_00", True),
    ("workers:*", "workers", "worker_01", True),
    ("workers:", "workers", "worker_01", True),  # an empty process part is every process of the group
    ("workers:worker_0[01]", "workers", "worker_01", True),
    ("workers:worker_0[01]", "workers", "worker_02", False),
    ("*:worker_00", "workers", "worker_00", True),
    ("workers:worker_00", "other", "worker_00", False),
])
def test_process_part(spec, group, name, hit):
    pattern = Pattern("*", spec)
    assert pattern.matches_process(group, name) is hit
    assert pattern.whole_node is (spec == "*")


def test_fleetctl_and_the_controller_read_patterns_with_the_same_code():
    assert selection.parse is namespec.parse and selection.SelectionError is PatternError
    assert cli_patterns.parse_pattern("web-*:app") == parse("web-*:app")
    with pytest.raises(CommandError) as info:
        cli_patterns.parse_pattern(":app")
    assert info.value.exit_code == 2 and str(info.value) == str(pytest.raises(PatternError, parse, ":app").value)


def test_the_grammar_imports_without_grpc_or_etcd():
    code = ("import sys, fleetvisor.controller.namespec; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'aetcd', 'google')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
