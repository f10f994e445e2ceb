"""Reading the deployment's settings: the policy file and the actor name."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from credit_pipeline.core.policy import Policy, PolicyError, parse_policy

ENV_POLICY = "CREDIT_PIPELINE_POLICY"
DEFAULT_POLICY = "policy.yaml"


def policy_path(path: str | Path | None = None) -> Path:
    """An explicit path, else ``$CREDIT_PIPELINE_POLICY``, else ``./policy.yaml``."""
    return Path(path or os.environ.get(ENV_POLICY) or DEFAULT_POLICY).expanduser()


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate the policy file; PolicyError names the file and each problem."""
    resolved = policy_path(path)
    if not resolved.is_file():
        raise PolicyError(
            [f"policy file not found; pass --policy FILE or set {ENV_POLICY} (default ./{DEFAULT_POLICY})"],
            str(resolved),
        )
    return parse_policy(resolved.read_text(encoding="utf-8"), str(resolved))


def current_actor() -> str:
    """Who is acting, for the audit columns (``$CREDIT_PIPELINE_ACTOR`` or the OS user)."""
    return os.environ.get("CREDIT_PIPELINE_ACTOR") or getpass.getuser()
