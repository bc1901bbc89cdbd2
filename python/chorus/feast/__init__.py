"""A Feast online store on Chorus; needs Feast (``pip install 'chorus-client[feast]'``).

In a ``feature_store.yaml``::

    online_store:
      type: chorus.feast.ChorusOnlineStore
      client_config: cluster/client.toml

Each feature view gets a bucket, ``feast.{project}.{view}``; see
:class:`ChorusOnlineStoreConfig` for the other settings.
"""

try:
    import feast as _feast  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "chorus.feast needs Feast: pip install 'chorus-client[feast]' (or pip install feast)"
    ) from e

from ._store import MAX_BATCH_KEYS, ChorusOnlineStore, ChorusOnlineStoreConfig, bucket_name

__all__ = ["ChorusOnlineStore", "ChorusOnlineStoreConfig", "MAX_BATCH_KEYS", "bucket_name"]
