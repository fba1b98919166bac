"""fleetctl's argument parsing for fleet mode: labels, node lists, patterns, durations."""

from __future__ import annotations

import datetime

import pytest

from fleetvisor.cli.client import CommandError
from fleetvisor.cli.duration import (DurationError, format_age, format_ago, format_time, parse_duration,
                                     parse_since)
from fleetvisor.cli.patterns import (parse_labels, parse_node_list, parse_pattern, split_tail_target,
                                     status_patterns)

# -- labels and node lists ---------------------------------------------------------------------


def test_labels_parse_to_a_dict():
    assert parse_labels(["role=web", "dc = east", "empty="]) == {"role": "web", "dc": "east", "empty": ""}
    assert parse_labels([]) == {}
    assert parse_labels(["url=http://x/?a=b"]) == {"url": "http://x/?a=b"}  # only the first '=' splits


@pytest.mark.parametrize("bad, words", [
    ("role", "expected KEY=VALUE"),
    ("=web", "key before '=' is empty"),
])
def test_bad_labels_are_usage_errors(bad, words):
    with pytest.raises(CommandError) as info:
        parse_labels([bad])
    assert info.value.exit_code == 2 and words in str(info.value) and bad in str(info.value)


def test_a_label_given_twice_differently_is_refused_but_repeating_it_is_fine():
    assert parse_labels(["a=1", "a=1"]) == {"a": "1"}
    with pytest.raises(CommandError, match="given twice"):
        parse_labels(["a=1", "a=2"])


def test_node_lists():
    assert parse_node_list("a,b, c,") == ["a", "b", "c"]
    assert parse_node_list(None) == [] and parse_node_list("") == []


def test_tail_target_splits_at_the_first_colon_only():
    assert split_tail_target("web-1:app") == ("web-1", "app")
    assert split_tail_target("web-1:workers:worker_00") == ("web-1", "workers:worker_00")
    for bad in ("app", ":app", "web-1:"):
        with pytest.raises(CommandError) as info:
            split_tail_target(bad)
        assert info.value.exit_code == 2 and "NODE:NAME" in str(info.value)


# -- host-prefixed namespecs (the grammar itself: test_namespec.py) ----------------------------

def test_an_empty_node_part_is_a_usage_error_with_the_fix():
    with pytest.raises(CommandError) as info:
        parse_pattern(":app")
    assert info.value.exit_code == 2 and "*:app" in str(info.value)


def test_status_patterns_all_means_no_filter():
    assert status_patterns([]) == []
    assert status_patterns(["web-1:app", "all"]) == []
    assert status_patterns(["web-1:app", "*:db"]) == ["web-1:app", "*:db"]


# -- durations and times -----------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400),
    ("1.5h", 5400), (" 2H ", 7200), ("0s", 0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "s", "10x", "-5m", "1h 30m", "m10"])
def test_bad_durations_say_what_would_do(bad):
    with pytest.raises(DurationError, match="30s, 10m, 2h, 1d"):
        parse_duration(bad)


def test_since_takes_a_duration_back_from_now_or_an_iso_time():
    now = 1_700_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2023-11-14T22:13:20+00:00", now) == 1_700_000_000.0
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000.0
    local = datetime.datetime(2024, 5, 1, 12, 0).astimezone().timestamp()
    assert parse_since("2024-05-01T12:00", now) == local  # no zone: the operator's local time
    assert parse_since("2024-05-01 12:00:00", now) == local
    with pytest.raises(DurationError, match="neither a duration"):
        parse_since("yesterday", now)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (4.9, "4s"), (59, "59s"), (60, "1m00s"), (185, "3m05s"), (7800, "2h10m"),
    (3 * 86400 + 4 * 3600 + 5, "3d4h"), (-3, "0s"),
])
def test_format_age(seconds, text):
    assert format_age(seconds) == text


def test_format_ago_and_time_treat_zero_as_never():
    assert format_ago(0, 100) == "never"
    assert format_ago(97, 100) == "3s ago"
    assert format_time(0) == "-"
    assert format_time(datetime.datetime(2024, 5, 1, 12, 0, 5).timestamp()) == "2024-05-01 12:00:05"
