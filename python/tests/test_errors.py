"""Each failure of the Rust client or the node surfaces as its own exception class."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import chorus
from conftest import DevCluster, unused_udp_port

B = "pytest-errors"


def test_every_exception_is_a_chorus_error() -> None:
    for cls in (
        chorus.InvalidArgument,
        chorus.TooLarge,
        chorus.NotFound,
        chorus.PermissionDenied,
        chorus.QuorumError,
        chorus.Overloaded,
        chorus.Unavailable,
        chorus.ChorusTimeout,
    ):
        assert issubclass(cls, chorus.ChorusError)
    assert issubclass(chorus.InvalidArgument, ValueError)
    assert issubclass(chorus.TooLarge, chorus.InvalidArgument)
    assert issubclass(chorus.ChorusTimeout, TimeoutError)


def test_a_missing_config_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(chorus.NotFound, match="does not exist"):
        chorus.Client.connect(tmp_path / "nope.toml")


def test_a_malformed_config_is_invalid_argument(tmp_path: Path) -> None:
    bad = tmp_path / "client.toml"
    bad.write_text("addresses = 17\n")
    with pytest.raises(chorus.InvalidArgument, match="addresses"):
        chorus.Client.connect(bad)


def test_missing_tls_material_is_invalid_argument(cluster: DevCluster) -> None:
    cfg = cluster.config("no-cert.toml", cert='"missing.pem"')
    with pytest.raises(chorus.InvalidArgument, match="missing.pem"):
        chorus.Client.connect(cfg)


def test_no_reachable_node_is_unavailable(cluster: DevCluster) -> None:
    cfg = cluster.config(
        "nowhere.toml",
        addresses=f'["127.0.0.1:{unused_udp_port()}"]',
        connect_timeout='"300ms"',
    )
    with pytest.raises(chorus.Unavailable):
        chorus.Client.connect(cfg)


def test_an_admin_call_with_a_client_certificate_is_permission_denied(
    client: chorus.Client, cluster: DevCluster
) -> None:
    with pytest.raises(chorus.PermissionDenied, match="permission denied"):
        client.leave("n3")
    # Control: the same call with the admin certificate gets past the role check, to a
    # different refusal (the node doesn't exist), so the class above comes from the role.
    with chorus.Client.connect(cluster.admin_toml) as admin:
        with pytest.raises(chorus.InvalidArgument, match="unknown node") as refused:
            admin.leave("n99")
        assert not isinstance(refused.value, chorus.PermissionDenied)


def test_a_bucket_name_over_the_limit_is_too_large(client: chorus.Client, key: str) -> None:
    with pytest.raises(chorus.TooLarge, match="max_bucket_bytes"):
        client.put("b" * 1025, key, b"x")
    # Control: at the limit it is taken.
    client.put("b" * 1024, key, b"x")


def test_an_empty_key_is_invalid_but_not_too_large(client: chorus.Client) -> None:
    with pytest.raises(chorus.InvalidArgument, match="empty") as refused:
        client.get(B, "")
    assert not isinstance(refused.value, chorus.TooLarge)


def test_a_garbage_context_is_invalid_argument(client: chorus.Client, key: str) -> None:
    with pytest.raises(chorus.InvalidArgument):
        client.put(B, key, b"x", context=b"\xff not a context")
    assert client.get(B, key).found is False


def test_a_node_past_its_write_budget_is_overloaded(
    start_cluster: Callable[..., DevCluster], key: str
) -> None:
    # Every write to 2 replicas needs 2 fan-out slots; with 1 the node must refuse it.
    tight = start_cluster(2, ["limits.max_fanout=1"], writable=False)
    with chorus.Client.connect(tight.client_toml) as c:
        with pytest.raises(chorus.Overloaded, match="max_fanout"):
            c.put(B, key, b"x")
        # Reads take no fan-out budget: the same node serves them.
        assert c.get(B, key).found is False
