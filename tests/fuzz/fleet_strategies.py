"""Strategies and checks shared by the fleet's fuzz modules (gRPC faces, fleetctl, etcd records).

Requests are built from the protobuf descriptors, so a field added to a .proto is fuzzed
without touching this file; `hints` steer chosen fields (names, signals, config text) towards
the values a daemon actually branches on.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import settings
from hypothesis import strategies as st

CI_EXAMPLES = 150  # the ci profile's default (conftest.py); budgets below are per that


def budget(examples: int) -> int:
    """`examples` under the ci default, scaled with the profile (the long run multiplies it)."""
    return max(1, round(examples * settings.default.max_examples / CI_EXAMPLES))


# -- values ------------------------------------------------------------------------------------

NAMES = st.sampled_from(["", "all", "*", "*:*", ":", "::", "a:b:c", "nosuch", "nosuch:*", "-", ".", "..",
                         "../etc/passwd", "x\x00y", "é", "名字", "\U0001f600", " ", "\t", "[", "]", "?", "\\"])
TEXT = st.text(max_size=40)
HUGE_TEXT = st.sampled_from([n * "x" for n in (1 << 10, 1 << 16, (1 << 20) + 1)])
SIGNALS = st.sampled_from(["", "HUP", "SIGHUP", "TERM", "USR1", "CONT", "0", "-1", "1", "15", "64", "65",
                           "99999999999999999999", "SIGNOPE", "sig", "9.5", "KILL "])
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([-(1 << 63), (1 << 63) - 1, -(1 << 31), (1 << 31) - 1,
                                                      1 << 32, 1 << 40]))
UINTS = st.one_of(st.integers(0, 3), st.sampled_from([(1 << 64) - 1, 1 << 63, 1 << 32]))
DOUBLES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e300, -1e300]))
CONFIG_TEXT = st.one_of(
    TEXT,
    # (programs that settle at once: a fuzz example waits for every process to settle)
    st.sampled_from(["[program:fz]\ncommand=sleep 1000\nstartsecs=0\n", "[program:fz]\n", "[program:fz]\ncommand=\n",
                     "[program:fz]\ncommand=true\nnumprocs=100000\n", "[program:local]\ncommand=true\n",
                     "[program:fz]\ncommand=true\nstartsecs=0\nautorestart=false\n",
                     "[supervisord]\nlogfile=/tmp/x\n", "[group:g]\nprograms=nosuch\n", "[program:%(x)s]\n",
                     "[program:fz]\ncommand=true\nprocess_name=%(program_name)s\nnumprocs=2\n",
                     "\x00", "[", "[program:fz]\ncommand=true\nuser=nosuchuser\n"]),
    st.builds(lambda head, body: f"[program:{head}]\ncommand={body}\nstartretries=0\n", TEXT, TEXT))


def strings(names: list[str]) -> st.SearchStrategy[str]:
    """Strings for a field that names things: real names, near misses, globs, unicode, empty, huge."""
    real = st.sampled_from(names) if names else st.nothing()
    mangled = st.builds(lambda n, suffix: n + suffix, real, st.sampled_from(["*", ":*", "?", ":", " ", "x"])) \
        if names else st.nothing()
    return st.one_of(real, mangled, NAMES, TEXT, HUGE_TEXT)


# -- messages from descriptors -----------------------------------------------------------------

Hints = Mapping[str, st.SearchStrategy[Any]]  # field name -> strategy for its (scalar) values


def _scalar(field: FieldDescriptor, hints: Hints, names: list[str], plausible: bool) -> st.SearchStrategy[Any]:
    if field.name in hints:
        return hints[field.name]
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(names) if plausible and names else strings(names)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return DOUBLES if kind == FieldDescriptor.TYPE_DOUBLE else DOUBLES.map(
            lambda v: v if not math.isfinite(v) or abs(v) < 3e38 else math.copysign(math.inf, v))
    if kind == FieldDescriptor.TYPE_ENUM:  # open enums: unknown numbers are legal on the wire
        known = st.sampled_from([v.number for v in field.enum_type.values])
        return known if plausible else st.one_of(known, st.integers(-5, 1000))
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return UINTS
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return UINTS.map(lambda v: v & 0xFFFFFFFF)
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return INTS.map(lambda v: max(-(1 << 31), min((1 << 31) - 1, v)))
    return INTS


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def message(descriptor: Descriptor, hints: Hints | None = None, names: list[str] | None = None,
            depth: int = 3, plausible: bool = False) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with every field random (or left unset), nested messages too.
    `plausible`: strings only from `names` and enums only known values, so that more requests
    get past the first check and reach the work (and the state) behind it."""
    hints, names = hints or {}, names or []
    cls = GetMessageClass(descriptor)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_map(field):
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            value_of = _scalar(value, {}, names, plausible)
            parts[field.name] = st.dictionaries(_scalar(key, {}, names, plausible), value_of, max_size=4)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                continue
            sub = message(field.message_type, hints, names, depth - 1, plausible)
            parts[field.name] = st.lists(sub, max_size=3) if _repeated(field) else sub
        else:
            scalar = _scalar(field, hints, names, plausible)
            parts[field.name] = st.lists(scalar, max_size=4) if _repeated(field) else scalar
    # each field set or not (an unset field is the most common request of all); a plausible
    # request sets them all, or it would mostly be refused for what it leaves out
    chosen = st.fixed_dictionaries(parts) if plausible else st.fixed_dictionaries({}, optional=parts)
    return chosen.map(lambda values: _build(cls, values))


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        target = getattr(msg, name) if not isinstance(value, (str, bytes, bool, int, float)) else None
        if isinstance(value, dict):
            target.update(value)  # type: ignore[union-attr]
        elif isinstance(value, list):
            target.extend(value)  # type: ignore[union-attr]
        elif isinstance(value, Message):
            target.CopyFrom(value)  # type: ignore[union-attr]
        else:
            setattr(msg, name, value)
    return msg


# -- raw requests ------------------------------------------------------------------------------

def requests(descriptor: Descriptor, hints: Hints, names: list[str]) -> st.SearchStrategy[Message]:
    """Random requests, half of them plausible."""
    return st.one_of(message(descriptor, hints, names, plausible=True), message(descriptor, hints, names))


def corrupt(valid: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    """Wire bytes that are not a valid request: random bytes, invalid UTF-8 in a string field,
    truncated or bit-flipped encodings of valid requests, absurd lengths."""
    encoded = valid.map(lambda m: m.SerializeToString())
    truncated = st.builds(lambda raw, cut: raw[:cut % max(1, len(raw))], encoded, st.integers(0, 1 << 16))
    flipped = st.builds(_flip, encoded, st.integers(0, 1 << 16), st.integers(1, 255))
    bad_utf8 = st.builds(lambda tag, junk: bytes([tag, len(junk)]) + junk,
                         st.sampled_from([0x0A, 0x12, 0x1A, 0x22, 0x2A]),  # fields 1-5, length-delimited
                         st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80"]))
    absurd = st.sampled_from([b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x0b", b"\x0c", b"\xff" * 11,
                              b"\x12\x05ab", b"\x07\x00", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"])
    return st.one_of(st.binary(max_size=64), truncated, flipped, bad_utf8, absurd)


def _flip(raw: bytes, at: int, mask: int) -> bytes:
    if not raw:
        return bytes([mask])
    i = at % len(raw)
    return raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1:]


@dataclass(frozen=True)
class Method:
    """One RPC of a service, as the fuzz tests call it."""

    path: str  # /package.Service/Name
    name: str
    request: Descriptor
    streaming: bool


def methods(service: ServiceDescriptor) -> list[Method]:
    return [Method(f"/{service.full_name}/{m.name}", m.name, m.input_type, m.server_streaming)
            for m in service.methods if not _client_streaming(m)]


def _client_streaming(method: MethodDescriptor) -> bool:
    return bool(method.client_streaming)


# -- the property every call must keep -----------------------------------------------------------

# What a refusal may be: a status that names the caller's mistake or the state it met (UNAVAILABLE:
# a node the controller cannot reach, an agent shutting down).
REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                      grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
                      grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED,
                      grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE})
# a traceback or an exception's repr in the details, or a failure of the client's own (a refusal
# it could not read, a server that went away)
LEAKS = ("Traceback", "Unexpected", "Exception", "exception", 'File "', "Error(", "Stream removed", "Socket closed")


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode  # OK, or the refusal
    details: str

    @property
    def refused(self) -> bool:
        return self.code != grpc.StatusCode.OK


def check_outcome(method: str, outcome: Outcome, allowed: frozenset[grpc.StatusCode] = REFUSALS) -> None:
    assert outcome.code == grpc.StatusCode.OK or outcome.code in allowed, \
        f"{method}: {outcome.code.name} {outcome.details!r}"
    assert not any(leak in outcome.details for leak in LEAKS), f"{method}: {outcome.details!r}"
    assert "\n" not in outcome.details.strip(), f"{method}: not one line: {outcome.details!r}"


def call(channel: grpc.Channel, method: Method, raw: bytes, bound: float = 5.0,
         stream_bound: float = 1.5) -> Outcome:
    """One call with `raw` as the serialized request. A stream counts as answered with its first
    message (then cancelled), or as waiting when nothing came within `stream_bound` (a follow or
    a watch with nothing new is allowed to wait); a refusal must come within the bound."""
    if not method.streaming:
        try:
            channel.unary_unary(method.path)(raw, timeout=bound)
        except grpc.RpcError as exc:
            return _failed(exc)
        return Outcome(grpc.StatusCode.OK, "")
    responses = channel.unary_stream(method.path)(raw, timeout=bound)
    try:
        for _ in _first(responses, stream_bound):
            break
    except grpc.RpcError as exc:
        return _failed(exc)
    finally:
        responses.cancel()
    return Outcome(grpc.StatusCode.OK, "")


def _first(responses: Any, within: float) -> Iterator[Any]:
    """The stream's first message, or nothing when none came within `within` seconds."""
    got: list[Any] = []
    error: list[BaseException] = []

    def pull() -> None:
        try:
            got.append(next(responses))
        except StopIteration:
            pass
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)
    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(within)
    if worker.is_alive():
        return
    if error:
        raise error[0]
    yield from got


def _failed(exc: grpc.RpcError) -> Outcome:
    code = exc.code()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise AssertionError("no answer within the bound")
    return Outcome(code, exc.details() or "")  # type: ignore[attr-defined]
