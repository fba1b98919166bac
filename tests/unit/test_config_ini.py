"""The line reader: it must read every file exactly as supervisord's configparser does."""

from __future__ import annotations

import configparser

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import read_ini


def values(text: str) -> dict[str, dict[str, str]]:
    return {name: {k: v.text for k, v in s.options.items()}
            for name, s in read_ini(text, "/x.conf").items()
            if name != "DEFAULT" or s.options}


def stock(text: str) -> dict[str, dict[str, str]]:
    """What supervisord's parser (RawConfigParser with these settings) makes of it."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.read_string(text)
    out = {name: dict(parser._sections[name]) for name in parser.sections()}
    if parser.defaults():
        out["DEFAULT"] = dict(parser.defaults())
    return out


SAMPLES = [
    "[a]\nk=v\n",
    "[a]\nk = v ; comment\nj=x;not comment\n",
    "[a]\nurl=http://h/#frag\nc=1 #c\n",
    "[a]\n; full\n# full\n  ;indented full\nk=v\n",
    "[a]\nk=one\n  two\n\n  three\n\nj=1\n",
    "[a]\nk=one\n  ; comment inside\n  two\n",
    "[a]\nK=V\nMixed_Case=x\n",
    "[a]\nk: v\nj : w=x\n",
    "[a]\nk=1\n[b]\nk=2\n[a]\nk=3\nm=4\n",
    "[A]\nk=1\n[a]\nk=2\n",
    "[a]\nk=\nj=   \n",
    "[a] ; comment\nk=v\n",
    "[a]#not a comment\nk=v\n",
    "  [a]\n  k=v\n  j=w\n",
    "[a]\nk=v#1 #2 ;3\n",
    "[a]\nk=x ;1 #2\n",
    "[DEFAULT]\nd=1\n[a]\nk=v\n",
    "[a]\nk=v\n[b]\n  indented=1\n",
    "[a]\nk=v\n\n\n",
    "[a]\n[b]\n",
    "[a]\nk=multi\n  line\n[b]\n  x=1\n",
    "[a]\nk=v\r\nj=w\r\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_reads_like_configparser(text):
    normalized = text.replace("\r\n", "\n")
    assert values(normalized) == stock(text)


def test_inline_comment_needs_whitespace():
    assert values("[a]\nk=x;y ;z\nj=x#y #z\n")["a"] == {"k": "x;y", "j": "x#y"}


def test_line_numbers_and_files():
    sections = read_ini("[a]\n\nk=v\n  more\nj=w\n[b]\nx=1\n", "/etc/s.conf")
    assert (sections["a"].line, sections["a"].file) == (1, "/etc/s.conf")
    assert sections["a"].options["k"].line == 3
    assert sections["a"].options["k"].text == "v\nmore"
    assert sections["a"].options["j"].line == 5
    assert sections["b"].line == 6


def test_repeated_option_takes_last_line():
    sections = read_ini("[a]\nk=1\nk=2\n", "/x")
    assert (sections["a"].options["k"].text, sections["a"].options["k"].line) == ("2", 3)


def test_text_before_section_is_an_error():
    with pytest.raises(ConfigError) as info:
        read_ini("\n; c\nk=v\n[a]\n", "/x.conf")
    assert info.value.line == 3
    assert "line: 3" in str(info.value) and "/x.conf" in str(info.value)


@pytest.mark.parametrize("text, line", [("[a]\nk=v\ngarbage\n", 3), ("[a]\n=v\n", 2),
                                        ("[a]\n[]\n", 2)])
def test_unparsable_line(text, line):
    with pytest.raises(ConfigError, match="cannot parse line") as info:
        read_ini(text, "/x.conf")
    assert info.value.line == line
    assert info.value.section == "a"
    # configparser refuses these too
    with pytest.raises(configparser.Error):
        stock(text)


def test_random_text_reads_like_configparser():
    """Random lines from a small alphabet of the characters that matter."""
    import random

    rng = random.Random(4321)
    pieces = ["[a]", "[b]", "[DEFAULT]", "k", "j", "=", ":", " ", "  ", "\t", ";", "#", "v",
              "x;y", "[", "]"]
    for _ in range(3000):
        lines = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
                 for _ in range(rng.randint(1, 8))]
        text = "\n".join(lines) + "\n"
        try:
            expected = stock(text)
        except configparser.Error:
            with pytest.raises(ConfigError):
                read_ini(text, "/x.conf")
            continue
        assert values(text) == expected, text
