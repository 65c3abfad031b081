"""A function's identity in the store: its namespace, its app and its function id, in one key.

The wire protocol names a function by ``<app>-<function>`` (``fnId``). In the store, and so in runs, metrics
and the API, a function of namespace ``default`` keeps that id, and a function of any other namespace is
``<namespace>/<app>-<function>``: two namespaces may use the same app and function ids. A namespace is a
DNS label (no ``/``), so ``split_function_id`` reads any stored id back; a wire id holding ``/`` is refused
(``IdentityError``), since in ``default`` it would read as another namespace's.
"""

from __future__ import annotations

from typing import Final

DEFAULT_NAMESPACE: Final = "default"
_SEPARATOR: Final = "/"


class IdentityError(ValueError):
    """A function id that cannot name a function in the store."""


def qualified_function_id(namespace: str, wire_id: str) -> str:
    """The store's key of function ``wire_id`` (``<app>-<function>``) in ``namespace``."""
    if _SEPARATOR in wire_id:
        raise IdentityError(
            f"the function id {wire_id!r} holds a '/': Stepline keeps '/' to set a namespace apart, so give "
            "the app and the function ids without one"
        )
    if namespace == DEFAULT_NAMESPACE:
        return wire_id
    return f"{namespace}{_SEPARATOR}{wire_id}"


def split_function_id(function_id: str) -> tuple[str, str]:
    """The namespace and the wire id (``fnId``) of a stored function id."""
    namespace, separator, wire_id = function_id.partition(_SEPARATOR)
    if not separator:
        return DEFAULT_NAMESPACE, function_id
    return namespace, wire_id


def namespace_of_function(function_id: str) -> str:
    return split_function_id(function_id)[0]


def wire_function_id(function_id: str) -> str:
    return split_function_id(function_id)[1]
