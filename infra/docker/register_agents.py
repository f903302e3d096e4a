"""Register agents with a coordinator and write each token to a file (compose's one-shot step).

Environment: ``COORDINATOR_URL`` (e.g. http://coordinator-1:8787), ``FLEET_ADMIN_TOKEN``,
``AGENT_NAMES`` (comma-separated), ``AGENT_CAPACITY`` (default 4) and ``TOKENS_DIR``
(one ``<name>.token`` file per agent). A name whose token file exists is skipped, so
running it again registers nothing twice. Standard library only: it runs in the
coordinator image. Exit status 1 with one line on stderr when the coordinator refuses.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def register(url: str, admin_token: str, name: str, capacity: int) -> str:
    """POST /v1/agents and return the new agent's token (shown only in this answer)."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/agents",
        data=json.dumps({"name": name, "capacity": capacity}).encode(),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        token: str = json.load(answer)["token"]
        return token


def main() -> int:
    """Register every name in AGENT_NAMES that has no token file yet."""
    url = os.environ["COORDINATOR_URL"]
    admin_token = os.environ["FLEET_ADMIN_TOKEN"]
    capacity = int(os.environ.get("AGENT_CAPACITY", "4"))
    tokens = Path(os.environ["TOKENS_DIR"])
    tokens.mkdir(parents=True, exist_ok=True)
    for name in filter(None, (n.strip() for n in os.environ["AGENT_NAMES"].split(","))):
        path = tokens / f"{name}.token"
        if path.exists():
            print(f"{name}: already registered ({path})")
            continue
        try:
            token = register(url, admin_token, name, capacity)
        except urllib.error.HTTPError as exc:
            print(f"registering {name} failed: HTTP {exc.code} {exc.reason}", file=sys.stderr)
            return 1
        except urllib.error.URLError as exc:
            print(f"registering {name} failed: {exc.reason}", file=sys.stderr)
            return 1
        # The token is a credential: owner-only, never printed.
        path.touch(mode=0o600)
        path.write_text(token, encoding="utf-8")
        print(f"{name}: registered ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
