"""``start_sandbox`` and ``serve`` (what ``credit-pipeline sandbox serve`` calls)."""

from __future__ import annotations

import io
import re
import socket
import threading
import time

import requests

from credit_pipeline.sandbox import generate_org, serve, start_sandbox


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_start_sandbox_exposes_urls_env_and_ground_truth_on_its_host() -> None:
    org = generate_org(seed=9, channels=2, messages_per_channel=10)
    with start_sandbox(org, github_token="g", discord_token="d") as sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.github_url)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v10", sandbox.discord_api_url)
        assert sandbox.env() == {"GITHUB_API_URL": sandbox.github_url, "DISCORD_API_URL": sandbox.discord_api_url,
                                 "GITHUB_TOKEN": "g", "DISCORD_BOT_TOKEN": "d"}
        truth = sandbox.ground_truth(*org.windows[0], source="github")
        assert truth and all(e.artifact_url.startswith(sandbox.github_url + "/acme/") for e in truth.values())
        pr = next(e for e in truth.values() if e.event_type == "pr_merged")
        listed = requests.get(f"{sandbox.github_url}/repos/{pr.repo}/pulls/{pr.number}",
                              headers={"Authorization": "token g"}, timeout=10).json()
        assert listed["html_url"] == pr.artifact_url
    with socket.socket() as probe:  # stopped: the port is free again
        probe.bind(("127.0.0.1", int(sandbox.github_url.rsplit(":", 1)[1])))


def test_serve_prints_the_environment_and_stops() -> None:
    out, stop = io.StringIO(), threading.Event()
    github_port, discord_port = _free_port(), _free_port()
    worker = threading.Thread(target=serve, kwargs=dict(github_port=github_port, discord_port=discord_port, seed=3,
                                                        out=out, stop=stop), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while "Ctrl-C" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = out.getvalue()
    assert f"export GITHUB_API_URL=http://127.0.0.1:{github_port}" in text
    assert f"export DISCORD_API_URL=http://127.0.0.1:{discord_port}/api/v10" in text
    assert "export GITHUB_TOKEN=" in text and "export DISCORD_BOT_TOKEN=" in text
    token = re.search(r"export GITHUB_TOKEN=(\S+)", text).group(1)
    me = requests.get(f"http://127.0.0.1:{github_port}/user", headers={"Authorization": f"token {token}"}, timeout=5)
    assert me.status_code == 200
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
