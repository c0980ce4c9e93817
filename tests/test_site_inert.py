"""The site is inert (issue 17): user-controlled strings never run as script, and `serve` stays inside the site.

A real database is built by the real passes from hostile inputs: a model id, tokenizer tokens, natural
text, negation item ids/templates/prompts/answers carrying `</script><script>alert(1)</script>`, quotes,
attribute breakers and unicode. Every page is opened in headless Chromium from file://: no dialog fires,
and the hostile model id is shown as text. `headwiki serve` is probed with raw HTTP requests.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ctrl_c_reaches_child

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}

HOSTILE_ID = "</script><script>alert(1)</script>\"'><img src=x onerror=alert(2)> ü模型 {{7*7}}"
HOSTILE_TOKENS = [
    "</script><script>alert(3)</script>", "\"'><img/src=x/onerror=alert(4)>", "<svg/onload=alert(5)>",
    "javascript:alert(6)", "ü模型", "{{7*7}}", "';alert(7);//", "</textarea><script>alert(8)</script>",
]


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from headwiki.ablation.run import ablate_model
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model
    from headwiki.random_models import build_word_tokenizer, word_vocab, write_random_model
    from headwiki.wiki.render import render_site

    root = tmp_path_factory.mktemp("hostile")
    model_dir = write_random_model(root / "model", arch="gpt2", n_layers=2, n_heads=2, d_model=32, vocab_size=64)
    words = word_vocab(64)
    words[4:4 + len(HOSTILE_TOKENS)] = HOSTILE_TOKENS
    build_word_tokenizer(words).save_pretrained(model_dir)
    plain = words[4 + len(HOSTILE_TOKENS):]
    text = root / "text.txt"
    text.write_text("\n\n".join(" ".join(HOSTILE_TOKENS[(i + j) % len(HOSTILE_TOKENS)] if j % 3 == 0 else plain[(i * 7 + j) % len(plain)]
                                         for j in range(40)) for i in range(12)), encoding="utf-8")
    items = root / "items.jsonl"
    with items.open("w", encoding="utf-8") as handle:
        for i in range(8):
            t = HOSTILE_TOKENS[i % len(HOSTILE_TOKENS)]
            prompt = f"{plain[i]} {t} {plain[i + 1]}"
            handle.write(json.dumps({
                "id": f"{t}-{i}", "template": HOSTILE_TOKENS[(i + 1) % len(HOSTILE_TOKENS)],
                "affirmative": prompt, "negated": f"{prompt} {plain[20]}", "control": f"{prompt} {plain[21]}",
                "target": f" {HOSTILE_TOKENS[(i + 2) % len(HOSTILE_TOKENS)]}", "foil": f" {plain[30 + i]}",
            }, ensure_ascii=False) + "\n")
    db = root / "hw.duckdb"
    loaded = load_model(str(model_dir), device="cpu", name=HOSTILE_ID)
    detect_model(loaded, db, n_seqs=6, seq_len=6, text=str(text), n_boot=50, batch_size=6)
    ablate_model(loaded, db, dataset=str(items), n_boot=50, n_perm=50, batch_size=16)
    site = root / "site"
    render_site(db, site)
    return db, site


# The browser runs in its own process: a second sync_playwright in the pytest process (the wiki browser tests
# hold one for the session) is refused.
BROWSE = """
import json, sys
from pathlib import Path
from playwright.sync_api import sync_playwright
site, chromium, args, hostile = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
dialogs, shown, searched = [], 0, []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
    page = browser.new_page()
    page.on("dialog", lambda d: (dialogs.append(page.url + ": " + d.message), d.dismiss()))
    for path in sorted(site.rglob("*.html")):
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(50)
        shown += hostile in page.inner_text("body")
        if page.query_selector("#head-search"):
            page.fill("#head-search", "all: script")
            page.fill("#head-search", "all: \u00fc\u6a21\u578b")
            searched.append(hostile in page.inner_text("#search-results"))
    browser.close()
print(json.dumps({"dialogs": dialogs, "shown": shown, "searched": searched}))
"""


def test_no_dialog_fires_on_any_page(hostile_site: tuple[Path, Path]) -> None:
    _, site = hostile_site
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 6
    proc = subprocess.run([sys.executable, "-c", BROWSE, str(site), CHROMIUM, json.dumps(LAUNCH_ARGS), HOSTILE_ID],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["dialogs"] == []
    assert seen["shown"] >= 3  # the id is displayed (as text) on the index, the model page and head pages
    assert seen["searched"] and all(seen["searched"])  # search results list the hostile model id as text
    html = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    js = (site / "assets" / "search-index.js").read_text(encoding="utf-8")
    for token in ("<script>alert(", "<img src=x onerror", "<svg/onload", "<img/src=x"):
        assert token not in html and token not in js, token


def _serve(site: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "headwiki.cli", "serve", "--out", str(site), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=ctrl_c_reaches_child)


def _get(port: int, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (http.client does not normalise it)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        con.putrequest("GET", raw_path, skip_accept_encoding=True)
        con.endheaders()
        response = con.getresponse()
        return response.status, response.read()
    finally:
        con.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_serve_answers_only_on_loopback_and_only_inside_the_site(tmp_path: Path, hostile_site: tuple[Path, Path]) -> None:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(hostile_site[1], site)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET\n")
    (site / "leak.txt").symlink_to(outside / "secret.txt")
    (site / "leakdir").symlink_to(outside, target_is_directory=True)
    (site / "assets" / "inner.txt").symlink_to(site / "index.html")  # a link that stays inside is fine
    server = _serve(site, "--port", "0")
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving ") and "http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no 0.0.0.0 / :: socket
        status, body = _get(port, "/index.html")
        assert status == 200 and b"headwiki" in body
        assert _get(port, "/assets/inner.txt")[0] == 200
        for path in ("/../outside/secret.txt", "/../../../../etc/passwd", "/%2e%2e/outside/secret.txt",
                     "/%2E%2E%2Foutside%2Fsecret.txt", "/assets/..%2f..%2foutside/secret.txt", "/..%5c..%5coutside/secret.txt",
                     "/leak.txt", "/leakdir/secret.txt", "/leakdir/", "/assets/", "/models/",
                     "//etc/passwd", "/./../outside/secret.txt"):
            status, body = _get(port, path)
            assert status == 404 or (status in (301, 302) and b"SECRET" not in body), (path, status)
            assert b"TOP-SECRET" not in body and b"root:" not in body and b"<title>Directory listing" not in body, path
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()


def test_serve_bad_and_busy_ports_are_one_line(hostile_site: tuple[Path, Path]) -> None:
    site = hostile_site[1]
    for port in ("-1", "70000"):
        proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "serve", "--out", str(site), "--port", port],
                              capture_output=True, text=True, timeout=60, env=ENV)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
            f"headwiki: error: --port {port} is not a port: use 1-65535, or 0 for a free one"], proc.stderr
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "serve", "--out", str(site), "--port", str(busy)],
                              capture_output=True, text=True, timeout=60, env=ENV)
    finally:
        holder.close()
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"headwiki: error: port {busy} on 127.0.0.1 is in use: pick another --port, or --port 0 for a free one"], proc.stderr
