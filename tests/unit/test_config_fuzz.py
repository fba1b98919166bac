"""Bad input of any kind ends in ConfigError, never in another exception."""

from __future__ import annotations

import random

import pytest

from fleetvisor.agent.config import parser
from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load
from tests.config_oracle import BASE, JUNK

def check(path) -> None:
    try:
        load(str(path), environ={"HOME": "/root"}, host_node_name="n")
    except ConfigError as exc:
        str(exc)  # must render too


def test_mutated_configs(tmp_path):
    rng = random.Random(99)
    path = tmp_path / "s.conf"
    (tmp_path / "x.inc").write_text("[program:inc]\ncommand=x\n")
    for _ in range(1500):
        text = list(BASE)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(text))
            action = rng.random()
            if action < 0.4:
                text.insert(pos, rng.choice(JUNK))
            elif action < 0.7:
                del text[pos:pos + rng.randint(1, 12)]
            else:
                text[pos] = rng.choice(JUNK)
        path.write_text("".join(text), encoding="utf-8", errors="surrogatepass")
        check(path)


def test_random_bytes(tmp_path):
    rng = random.Random(5)
    path = tmp_path / "s.conf"
    for _ in range(300):
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
        check(path)


def test_random_printable_text(tmp_path):
    rng = random.Random(6)
    alphabet = "[]=:;#%()s \n\tabcx0123,\"'/"
    path = tmp_path / "s.conf"
    for _ in range(1000):
        text = "[supervisord]\n" + "".join(rng.choice(alphabet) for _ in range(80))
        path.write_text(text)
        check(path)


def test_empty_file(tmp_path):
    path = tmp_path / "s.conf"
    path.write_text("")
    with pytest.raises(ConfigError, match="no \\[supervisord\\] section"):
        load(str(path))


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "s.conf"
    path.write_bytes(b"\xef\xbb\xbf[supervisord]\nidentifier=bom\n")
    assert load(str(path)).supervisord.identifier == "bom"


def test_nul_in_paths(tmp_path):
    path = tmp_path / "s.conf"
    for text in ["[supervisord]\nlogfile=/tmp/a\x00b\n",
                 "[supervisord]\nchildlogdir=/tmp/\x00\n",
                 "[supervisord]\n[include]\nfiles=a\x00b\n",
                 "[supervisord]\n[program:p]\ncommand=x\nuser=ro\x00ot\n",
                 "[supervisord]\n[program:p]\ncommand=x\nstdout_logfile=~\x00/x\n",
                 "[supervisord]\n[unix_http_server]\nfile=~\x00x/s\n",
                 "[supervisord]\n[fleetvisor]\nstate_dir=~\x00x\n"]:
        path.write_text(text)
        check(path)
    with pytest.raises(ConfigError):
        load(str(tmp_path / "a\x00b.conf"))


def test_unreadable_include_even_as_root(tmp_path, monkeypatch):
    (tmp_path / "x.conf").write_text("[program:x]\ncommand=x\n")
    main = tmp_path / "s.conf"
    main.write_text("[supervisord]\n[include]\nfiles=x.conf\n")
    real_open = open

    def deny(path, *args, **kwargs):
        if str(path).endswith("x.conf"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(parser, "open", deny, raising=False)
    with pytest.raises(ConfigError, match="could not read config file .*Permission denied"):
        load(str(main))
