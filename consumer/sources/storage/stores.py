"""Which :class:`~consumer.sources.storage.store.Store` reads a root: local paths, or a cloud bucket by
URL."""

from __future__ import annotations

from consumer.sources.storage.store import LocalStore, Store, is_url


def store_for(root: str) -> Store:
    """The store that reads ``root`` (one instance per call; cloud stores hold a client)."""
    if is_url(root):
        from consumer.sources.storage.cloud import CloudStore  # only with an object-store URL: optional deps

        return CloudStore.for_url(root)
    return LocalStore()


class Stores:
    """One store per URL scheme and bucket, created on first use and shared by every root using it."""

    def __init__(self) -> None:
        self._stores: dict[str, Store] = {}

    def get(self, root: str) -> Store:
        """The store for ``root``, or for an object it listed."""
        key = _store_key(root)
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = store_for(root)
            # The objects it lists are named scheme://bucket/key even when the root named the account
            # too (abfss://container@account.dfs.core.windows.net/...): they must find the same store.
            self._stores.setdefault(getattr(store, "home", key), store)
        return store


def _store_key(root: str) -> str:
    if not is_url(root):
        return ""
    scheme, _, rest = root.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0]}"
