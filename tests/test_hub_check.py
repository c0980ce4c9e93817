"""The hub check goes through huggingface_hub's own HTTP client, so a proxy (HTTP(S)_PROXY) is honoured."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

CHECK = "from headwiki.models import _hub_reachable; print(_hub_reachable(timeout_s=5))"


def _check(env_extra: dict[str, str]) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_ENDPOINT": "http://hub.headwiki-test.invalid", **env_extra}
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_hub_check_honours_the_proxy() -> None:
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # a forward proxy receives the absolute URL
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        assert _check({"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}) == "True"
        assert seen and seen[0].startswith("http://hub.headwiki-test.invalid")
        assert _check({}) == "False"  # the same endpoint without the proxy cannot be resolved
        assert _check({"HTTP_PROXY": proxy, "HF_HUB_OFFLINE": "1"}) == "False"
    finally:
        server.shutdown()
        server.server_close()
