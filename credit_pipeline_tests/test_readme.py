"""The README's walk-through, line by line, in a clean clone of this repository with nothing set."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from credit_pipeline.ledger.engine import stop_embedded_server

REPO = Path(__file__).resolve().parents[1]


def walkthrough_lines(readme: str) -> list[str]:
    section = readme.split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's Walk-through section has a sh block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_in_a_clean_clone(tmp_path):
    clone = tmp_path / "credit_pipeline"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    # What is committed is what a user clones; in CI the checkout is clean, locally uncommitted edits are left out.
    lines = walkthrough_lines((clone / "README.md").read_text())
    assert lines[0] == "pip install -e ." and any(line.startswith("credit-pipeline demo") for line in lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CREDIT_PIPELINE_", "DAGSTER_", "GITHUB_", "DISCORD_"))}
    env["PYTHONPATH"] = str(clone)  # the clone's code, as `pip install -e .` there would give (not run: it would
    #                                 re-point this machine's installed package at a temporary folder)
    try:
        for line in lines[1:]:
            done = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"README line failed: {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            if line.startswith("credit-pipeline epochs"):
                assert "finalized" in done.stdout, done.stdout
            if line.startswith("credit-pipeline verify"):
                assert done.stdout.startswith("OK: "), done.stdout
    finally:
        stop_embedded_server(clone / ".credit_pipeline" / "pgdata")
    assert not list(clone.glob(".tmp_dagster_home_*"))
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True, text=True).stdout
    assert [l for l in status.splitlines() if ".credit_pipeline/" not in l and "__pycache__" not in l] == [], status
