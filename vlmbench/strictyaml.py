"""YAML for configs: PyYAML's safe loader, minus what lets a config exhaust the machine or slip through.

Why it exists: `yaml.safe_load` builds a "billion laughs" alias bomb cheaply (shared references), but
anything that walks the value afterwards (a repr in an error message, a JSON dump for the
fingerprint) expands it: at depth 9 that is gigabytes. A config never needs aliases, so they are
refused where they appear (anchors alone are harmless). Duplicate keys, which PyYAML silently
resolves to the last one, are refused too: `batch_size: 4` followed later by `batch_size: 8` is a
slip, not an intention. Errors are `yaml.YAMLError`s with the line, so callers report them as
invalid YAML.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

MAX_CONFIG_BYTES = 1_000_000  # a vlmbench config is a few KB; this bounds what is read at all


class StrictYAMLError(yaml.YAMLError):
    """YAML that parses but is not allowed in a config (aliases, duplicate keys, too large or deep)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and duplicate mapping keys."""

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise StrictYAMLError(f"YAML alias *{event.anchor[:40]} at line {event.start_mark.line + 1}: aliases "
                                  "are not allowed in a vlmbench config; write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {str(key)[:60]!r} (a later value would silently "
                                       "replace the earlier one); keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def strict_load(text: str) -> Any:
    """The YAML document in `text`; raises yaml.YAMLError (StrictYAMLError for the refusals above)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise StrictYAMLError(f"{len(text)} characters, more than a config may hold ({MAX_CONFIG_BYTES})")
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except RecursionError:
        raise StrictYAMLError("nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's int digit limit
        raise StrictYAMLError(str(exc)[:200]) from None
