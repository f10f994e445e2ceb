"""Reading a policy file's YAML strictly: what a reader sees is what the pipeline gets (SPEC §6).

PyYAML's safe loader follows YAML 1.1, which silently turns ``010`` into 8, ``1:30``
into 90 and ``0x10`` into 16, lets a duplicated key overwrite the first, and expands
aliases (a few hundred bytes can become megabytes). A policy decides who is paid, so
here only plain decimal integers are numbers, every other scalar stays the text it is
written as (and the policy's validation then names it), duplicate keys, anchors and
aliases are refused, and the file's size is capped.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

MAX_POLICY_BYTES = 256 * 1024
EXCERPT = 40


class PolicyYamlError(ValueError):
    """A policy file the strict loader refuses; the message names the line and what to fix."""


def excerpt(value: Any) -> str:
    """A short, safe rendering of a value for a message (never the whole of a large input)."""
    text = repr(value)
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


class _Resolver(BaseResolver):
    """Only plain decimal integers, decimals (so they can be refused as non-integers), booleans and null."""


_Resolver.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^-?(?:0|[1-9][0-9]*)$"), list("-0123456789"))
_Resolver.add_implicit_resolver("tag:yaml.org,2002:float",
                                re.compile(r"^-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$|^-?[0-9]+[eE][-+]?[0-9]+$"),
                                list("-.0123456789"))
_Resolver.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))
_Resolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:null|~|)$"), ["n", "~", ""])


class _Composer(Composer):
    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise PolicyYamlError(f"line {mark.line + 1}: anchors and aliases (&name, *name) are not allowed in a policy; "
                                  "write each value out")
        if getattr(event, "tag", None) not in (None, "!"):
            raise PolicyYamlError(f"line {event.start_mark.line + 1}: tag {excerpt(event.tag)} is not allowed in a policy; "
                                  "write plain values")
        return super().compose_node(parent, index)


class _Constructor(SafeConstructor):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # noqa: D102
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise PolicyYamlError(f"line {key_node.start_mark.line + 1}: key {excerpt(key)} is given twice "
                                      f"(first on line {seen[key]}); keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


for _tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary", "tag:yaml.org,2002:set", "tag:yaml.org,2002:omap",
             "tag:yaml.org,2002:pairs"):
    _Constructor.add_constructor(_tag, SafeConstructor.construct_undefined)


class StrictPolicyLoader(Reader, Scanner, Parser, _Composer, _Constructor, _Resolver):
    """PyYAML's pieces with the strict resolver, composer and constructor above."""

    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


def load_policy_yaml(text: str) -> Any:
    """The document in ``text``; PolicyYamlError for anything the strict rules refuse."""
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise PolicyYamlError(f"the file is {size} bytes; a policy is at most {MAX_POLICY_BYTES} bytes")
    loader = StrictPolicyLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PolicyYamlError(f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    finally:
        loader.dispose()
