"""The scripts under examples/ run against a test cluster and do what they say."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from conftest import REPO, DevCluster

EXAMPLES = REPO / "examples"


def run(args: List[str], cwd: Path, config: Path) -> str:
    env = dict(os.environ, CHORUS_CLIENT_CONFIG=str(config))
    p = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, f"{args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_read_your_writes(cluster: DevCluster) -> None:
    script = EXAMPLES / "python" / "read_your_writes.py"
    out = run([str(script), "--config", str(cluster.client_toml)], REPO, cluster.client_toml)
    assert "two concurrent updates leave 2 siblings" in out
    assert "after the merge: [b'apples,pears,plums']" in out
    assert "after the delete, found = False" in out


def test_batch_reads(cluster: DevCluster) -> None:
    script = EXAMPLES / "python" / "batch_reads.py"
    out = run(
        [str(script), "--config", str(cluster.client_toml), "--keys", "300"],
        REPO,
        cluster.client_toml,
    )
    assert "put_many: 300 written, 0 failed" in out
    assert "get_many: 300 of 301 found" in out
    assert "deleted; found now: 0" in out


def test_asyncio_example(cluster: DevCluster) -> None:
    script = EXAMPLES / "python" / "asyncio_example.py"
    # No --config: the script falls back to CHORUS_CLIENT_CONFIG.
    out = run([str(script)], REPO, cluster.client_toml)
    assert "200 puts and 200 gets with asyncio.gather" in out
    assert "get_many in two overlapping batches: 200 found" in out
    assert "a bad level is refused: InvalidArgument" in out


@pytest.mark.skipif(
    importlib.util.find_spec("feast") is None,
    reason="Feast is not installed (pip install './python[feast]')",
)
def test_feature_store_example(tmp_path: Path, cluster: DevCluster) -> None:
    repo = tmp_path / "feature_store"
    shutil.copytree(EXAMPLES / "feature_store", repo, ignore=shutil.ignore_patterns("data"))
    out = run(["generate_data.py", "--drivers", "300"], repo, cluster.client_toml)
    assert "wrote 7200 rows for 300 drivers" in out
    # `feast apply` through its CLI, as the README says.
    run(["-m", "feast.cli.cli", "apply"], repo, cluster.client_toml)
    out = run(["run.py"], repo, cluster.client_toml)
    assert "300 drivers read from Chorus, each with its newest row" in out
