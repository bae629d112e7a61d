"""Tests for joining a cluster with nas.ray_pool.ensure_ray against a plain `ray start --head`, with the token
authentication Ray gives it by default (a token in ~/.ray/auth_token turns it on): a driver on the same machine joins
with that token and runs a task; a missing or wrong token fails at once in one line that says what to set."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from nas.ray_pool import _auth_mode, _gcs_accepts, _on_this_machine  # noqa: E402
from ray_head import ray_head  # noqa: E402
from search_spaces.errors import UserInputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# A driver joining the cluster at argv[1] as `nas search --ray-address` does; a UserInputError ends it as the CLI
# does (one line on stderr, exit status 2), with the seconds it took.
CLIENT = """
import os, sys, time
import ray
from nas.ray_pool import ensure_ray
from search_spaces.errors import UserInputError

start = time.monotonic()
try:
    ensure_ray(sys.argv[1])
except UserInputError as e:
    print(f"{e} [{time.monotonic() - start:.1f} s]", file=sys.stderr)
    sys.exit(2)

@ray.remote
def worker_pid():
    return os.getpid()

print(ray.get(worker_pid.remote()) != os.getpid(), ray.cluster_resources()["CPU"])
"""


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """`ray start --head` as a user runs it, with a home whose ~/.ray/auth_token holds a fresh token. Yields
    (address, home)."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    with ray_head(1, {**env, "HOME": str(home)}) as (address, _):
        yield address, home


def join(address: str, home: Path, **env) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    return subprocess.run([sys.executable, "-c", CLIENT, address], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "HOME": str(home), **env})


def test_the_plain_head_demands_a_token(head):
    address, _ = head
    assert not _gcs_accepts(address, None)


def test_a_driver_on_the_machine_joins_with_the_head_token_and_runs_a_task(head):
    address, home = head
    joined = join(address, home)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split() == ["True", "1.0"]
    assert "InvalidAuthToken" not in joined.stderr and "Token authentication" not in joined.stderr, joined.stderr


@pytest.mark.parametrize("token_env, says", [
    ({}, "this machine has none"),
    ({"RAY_AUTH_TOKEN": "not-the-token"}, "the token from RAY_AUTH_TOKEN is not it"),
    ({"RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE=disabled here"),
])
def test_a_missing_or_wrong_token_fails_at_once_in_one_line(head, tmp_path, token_env, says):
    address, _ = head
    refused = join(address, tmp_path, **token_env)  # a home without ~/.ray/auth_token
    assert refused.returncode == 2, refused.stderr
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert says in message and "RAY_AUTH_TOKEN=" in message and address in message
    assert float(message.rsplit("[", 1)[1].split()[0]) < 5, message


def test_an_unknown_auth_mode_is_a_user_error(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "yes")
    with pytest.raises(UserInputError, match="RAY_AUTH_MODE='yes': allowed are 'token' and 'disabled'"):
        _auth_mode()


def test_the_default_token_file_goes_only_to_addresses_of_this_machine():
    assert _on_this_machine("127.0.0.1") and _on_this_machine("localhost")
    assert not _on_this_machine("203.0.113.254")  # a documentation address (TEST-NET-3), on no interface here
