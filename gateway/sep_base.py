"""The 2030.5 base types every resource builder shares: the IdentifiedObject head and List.

Kept apart from ``gateway/sep.py`` and ``gateway/sep_der.py`` so that both can use them and
``sep`` can still re-export the DER builders (one import for the routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from gateway.xmlio import NS, UINT8, UINT32, add, checked, mrid_text, root, string_text


def optional_checked(value: int | None, bounds: tuple[int, int], what: str) -> int | None:
    """``checked`` for a minOccurs=0 element or optional attribute."""
    return None if value is None else checked(value, bounds, what)


def add_identity(element: etree._Element, *, mrid: str, description: str | None) -> None:
    """mRID and description, the head of every IdentifiedObject (and of FunctionSetAssignments,
    after its links). The description is a String32; version is never sent."""
    add(element, "mRID", mrid_text(mrid))
    if description is not None:
        add(element, "description", string_text(description, max_length=32, what="description"))


@dataclass(frozen=True, slots=True)
class ListShape:
    """What the XSD says of one list type: its root, its items, and its attributes.

    ``subscribable``: a SubscribableList (else a plain List, which has no such attribute).
    ``poll_rate``: the type declares pollRate (only the top lists of a function set do).
    """

    tag: str
    item_tag: str
    subscribable: bool
    poll_rate: bool


def build_list(
    shape: ListShape,
    *,
    href: str,
    all: int,
    results: int,
    items: Sequence[etree._Element],
    poll_rate: int | None = None,
    subscribable: int | None = None,
) -> etree._Element:
    """A list resource. ``results`` is the number of items in this page, so it must equal
    ``len(items)``; ``all`` counts the whole list. Attributes the type lacks are refused
    rather than dropped, so a wiring mistake shows at once."""
    if poll_rate is not None and not shape.poll_rate:
        raise ValueError(f"{shape.tag} has no pollRate attribute")
    if subscribable is not None and not shape.subscribable:
        raise ValueError(f"{shape.tag} is a plain List, it has no subscribable attribute")
    if results != len(items):
        raise ValueError(f"{shape.tag}: results={results} but {len(items)} items")
    if all < results:
        raise ValueError(f"{shape.tag}: all={all} is less than results={results}")
    element = root(
        shape.tag,
        href=href,
        all=checked(all, UINT32, "all"),
        results=checked(results, UINT32, "results"),
        pollRate=optional_checked(poll_rate, UINT32, "pollRate"),
        subscribable=optional_checked(subscribable, UINT8, "subscribable"),
    )
    expected = f"{{{NS}}}{shape.item_tag}"
    for item in items:
        if item.tag != expected:
            raise ValueError(f"{shape.tag} holds {shape.item_tag} elements, not {item.tag}")
        element.append(item)
    return element
