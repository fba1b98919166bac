"""XML-RPC: parsing a call, finding and checking its method, marshalling the answer.

The wire rules are supervisord 4.3's:

- a body that is not an XML-RPC call, or a call without a method name, is HTTP 400;
- an unknown method (anything but exactly ``namespace.method``, or a name starting with
  ``_``) is fault UNKNOWN_METHOD; wrong argument counts or types are INCORRECT_PARAMETERS;
- a failure the method did not foresee is HTTP 500 and one error line in the main log (the
  traceback only at debug level), and the server carries on;
- system.multicall answers each call with its bare value or a fault struct, in order.

Methods are the public methods of namespace objects; their type annotations say how
arguments are checked and converted, their docstrings' ``@param``/``@return`` tags are what
system.methodSignature reports.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import traceback
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..faults import Fault, FaultError
from ..mainlog import Level, MainLog

# Request bodies are quoted in log lines only this far.
_LOGGED_BODY = 200
# Characters XML 1.0 cannot carry, even escaped: one in a response makes the client's parser refuse all of it.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_safe(text: str) -> str:
    """`text` with the characters XML cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


# Arrays and structs nested deeper than this are refused (BAD_ARGUMENTS) before any method
# sees them: converting them to text would recurse past Python's limit.
MAX_NESTING = 64


def nesting_depth(value: object) -> int:
    """How deeply arrays and structs nest in `value`, counted without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple)):
            children: Sequence[object] = item
        elif isinstance(item, dict):
            children = list(item.values())
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Method:
    name: str
    func: Callable[..., Any]
    signature: inspect.Signature
    doc: str

    def bind(self, params: Sequence[object]) -> list[object]:
        """The arguments converted to the annotated types; INCORRECT_PARAMETERS if they
        do not fit."""
        try:
            bound = self.signature.bind(*params)
        except TypeError:
            raise FaultError(Fault.INCORRECT_PARAMETERS) from None
        args = []
        for name, value in bound.arguments.items():
            args.append(_convert(value, self.signature.parameters[name].annotation))
        return args


def _convert(value: object, kind: object) -> object:
    if kind is bool:
        return bool(value)  # supervisord takes any value for its wait flags
    if kind is int:
        if isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise FaultError(Fault.INCORRECT_PARAMETERS)
    if kind is str:
        if isinstance(value, bytes):  # base64 where a string was meant
            return value.decode("utf-8", "replace")
        if isinstance(value, str):
            return value
        raise FaultError(Fault.INCORRECT_PARAMETERS)
    if kind is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise FaultError(Fault.INCORRECT_PARAMETERS)
    return value


def signature_types(doc: str) -> list[str] | None:
    """[return type, param types...] from ``@return``/``@param`` tags, None without @return."""
    returns = None
    params = []
    for line in doc.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == "@param":
            params.append(parts[1])
        elif len(parts) >= 2 and parts[0] == "@return":
            returns = parts[1]
    return None if returns is None else [returns, *params]


def _methods(namespace: str, obj: object) -> dict[str, Method]:
    methods = {}
    for attr in dir(type(obj)):
        if attr.startswith("_") or attr.isupper():
            continue
        func = getattr(obj, attr)
        if not inspect.ismethod(func):
            continue
        name = f"{namespace}.{attr}"
        methods[name] = Method(name, func, inspect.signature(func, eval_str=True),
                               inspect.cleandoc(func.__doc__ or ""))
    for alias, target in getattr(obj, "ALIASES", {}).items():
        method = methods[f"{namespace}.{target}"]
        methods[f"{namespace}.{alias}"] = Method(f"{namespace}.{alias}", method.func,
                                                  method.signature, method.doc)
    return methods


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""


class Dispatcher:
    """All methods of one HTTP server: the configured namespaces plus system.*."""

    def __init__(self, namespaces: Mapping[str, object], log: MainLog,
                 calls: Counter[tuple[str, str]] | None = None,
                 unlisted: Mapping[str, object] | None = None) -> None:
        """`unlisted`: namespaces served but left out of system.listMethods, which stock
        clients compare with supervisord's list (fleetvisor's own methods)."""
        self.log = log
        self.calls: Counter[tuple[str, str]] = Counter() if calls is None else calls  # for /metrics
        self.methods: dict[str, Method] = {}
        for name, obj in namespaces.items():
            self.methods.update(_methods(name, obj))
        self.methods.update(_methods("system", SystemNamespace(self)))
        self.listed = sorted(self.methods)
        for name, obj in (unlisted or {}).items():
            self.methods.update(_methods(name, obj))

    async def call(self, name: str, params: Sequence[object]) -> Any:  # what the method returns: marshallable
        method = self.methods.get(name)
        self.calls["xmlrpc", name if method is not None else "(unknown)"] += 1
        if method is None:
            raise FaultError(Fault.UNKNOWN_METHOD)
        result = method.func(*method.bind(params))
        if inspect.isawaitable(result):
            result = await result
        return result

    async def handle(self, body: bytes) -> Reply:
        """One POST to /RPC2: the HTTP status and the response body."""
        try:
            params, name = xmlrpc.client.loads(body, use_builtin_types=True)
        except Exception:  # expat errors, bad values, a <fault> sent as a call...
            self.log.error(f"XML-RPC request data {_quote(body)} is invalid: unmarshallable")
            return Reply(400)
        if not name:
            self.log.error(f"XML-RPC request data {_quote(body)} is invalid: no method name")
            return Reply(400)
        trace = self.log.is_enabled(Level.TRAC)
        try:
            if trace:
                self.log.trace(f"XML-RPC method called: {name}()")
            if max((nesting_depth(p) for p in params), default=0) > MAX_NESTING:
                raise FaultError(Fault.BAD_ARGUMENTS, f"arguments nested deeper than {MAX_NESTING} levels")
            value = await self.call(name, params)
            response = xmlrpc.client.dumps((value,), methodresponse=True)
            if trace:
                self.log.trace(f"XML-RPC method {name}() returned successfully")
        except FaultError as exc:
            if trace:
                self.log.trace(f"XML-RPC method {name}() returned fault: [{int(exc.code)}] {exc.text}")
            # A fault may quote what the caller sent (a name given as base64 can hold a NUL).
            response = xmlrpc.client.dumps(xmlrpc.client.Fault(int(exc.code), xml_safe(exc.text)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error(f"XML-RPC method {name}() failed unexpectedly: "
                           f"{type(exc).__name__}: {exc}")
            if self.log.is_enabled(Level.DEBG):
                self.log.debug(traceback.format_exc().rstrip())
            return Reply(500)
        return Reply(200, response.encode("utf-8", "xmlcharrefreplace"))


def _quote(body: bytes) -> str:
    text = repr(body[:_LOGGED_BODY].decode("utf-8", "replace"))
    return text + "..." if len(body) > _LOGGED_BODY else text


class SystemNamespace:
    """system.* — introspection and batching."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def listMethods(self) -> list[str]:
        """The names of every method this server offers, sorted.

        @return array result  an array of method names
        """
        return list(self._dispatcher.listed)

    def methodHelp(self, name: str) -> str:
        """The documentation of a method.

        @param string name  the method's name
        @return string result  its documentation
        """
        method = self._dispatcher.methods.get(name)
        if method is None:
            raise FaultError(Fault.SIGNATURE_UNSUPPORTED)
        return method.doc

    def methodSignature(self, name: str) -> list[str]:
        """The types of a method: [return type, parameter types...].

        @param string name  the method's name
        @return array result  an array of type names
        """
        method = self._dispatcher.methods.get(name)
        types = None if method is None else signature_types(method.doc)
        if types is None:
            raise FaultError(Fault.SIGNATURE_UNSUPPORTED)
        return types

    async def multicall(self, calls: list) -> list[object]:
        """Make several calls in one request, one after the other. Each call is a struct
        {'methodName': string, 'params': array}; each answer is the call's value, or a
        struct {'faultCode': int, 'faultString': string}.

        @param array calls  the calls
        @return array result  the answers, in order
        """
        results: list[object] = []
        for call in calls:
            try:
                results.append(await self._one(call))
            except FaultError as exc:
                results.append({"faultCode": int(exc.code), "faultString": xml_safe(exc.text)})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dispatcher.log.error(f"XML-RPC multicall failed unexpectedly: "
                                           f"{type(exc).__name__}: {exc}")
                results.append({"faultCode": int(Fault.FAILED),
                                "faultString": xml_safe(f"FAILED: {type(exc).__name__}: {exc}")})
        return results

    async def _one(self, call: object) -> object:
        name = call.get("methodName") if isinstance(call, dict) else None
        if name is None or not isinstance(call, dict):
            raise FaultError(Fault.INCORRECT_PARAMETERS, "No methodName")
        if name == "system.multicall":
            raise FaultError(Fault.INCORRECT_PARAMETERS, "Recursive system.multicall forbidden")
        params = call.get("params", [])
        if not isinstance(params, (list, tuple)):
            raise FaultError(Fault.INCORRECT_PARAMETERS)
        return await self._dispatcher.call(str(name), params)
