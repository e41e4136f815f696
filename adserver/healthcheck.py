"""`python -m adserver.healthcheck`: the container's HEALTHCHECK. Asks this host's Kaeru for
/healthz where the settings say it listens (KAERU_PORT; KAERU_HOST unless it is a wildcard),
so a changed port needs no change to the image. Exit 0 healthy, 1 not."""

from __future__ import annotations

import os
import sys
import urllib.request

WILDCARDS = ("", "0.0.0.0", "::")
TIMEOUT_SECONDS = 3.0


def healthz_url(env: dict[str, str] | os._Environ[str]) -> str:
    host = (env.get("KAERU_HOST") or "").strip()
    host = "127.0.0.1" if host in WILDCARDS else host
    host = f"[{host}]" if ":" in host else host
    port = (env.get("KAERU_PORT") or "").strip() or "8080"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = healthz_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            healthy = response.status == 200
    except OSError as exc:
        print(f"kaeru healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
