"""The status page in headless Chromium (Debian package ``chromium``): after its script ran,
the page shows the node and its jobs with progress bars."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import Node

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") \
    or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium (apt-get install chromium)")


def dump_dom(url: str, tmp_path) -> str:
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_status_page_in_headless_chromium(node: Node, tmp_path) -> None:
    done = node.submit([1, 2, 3])
    failed = node.submit([1, 2], processor="len")
    node.wait(done)
    node.wait(failed)
    dom = dump_dom(node.url + "/", tmp_path)
    # Rows rendered by the page's script (class "live"), not only by the server.
    assert f'class="live" data-node-id="{node.backend.node_id}"' in dom
    assert f'class="live" data-job-id="{done}"' in dom
    assert f'class="live" data-job-id="{failed}"' in dom
    assert 'class="status-completed"' in dom and 'class="status-failed"' in dom
    assert "<progress" in dom and "TypeError" in dom
    assert 'id="updated">updated ' in dom  # the refresh succeeded
    assert "<polyline" in dom


def test_status_page_asks_for_the_token(node_factory, tmp_path) -> None:
    node = node_factory(auth_token="page-token")
    job = node.request("POST", "/submit_job", {"data": [1], "processor_func": "square"},
                       headers={"Authorization": "Bearer page-token"})[2]["job_id"]
    dom = dump_dom(node.url + "/", tmp_path)
    assert '<section id="login">' in dom  # shown, no longer hidden
    assert job not in dom
