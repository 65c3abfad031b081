"""The store's errors.

StoreError           base
  SchemaMismatch     the database is not at the schema version this Stepline needs
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""


class SchemaMismatch(StoreError):
    """The database schema is older or newer than this Stepline."""
