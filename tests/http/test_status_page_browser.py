"""The status page in headless Chromium (Debian package ``chromium``): after its script ran,
the page shows the node and its jobs with progress bars."""

from __future__ import annotations


def test_status_page_in_headless_chromium(node, dump_dom) -> None:
    done = node.submit([1, 2, 3])
    failed = node.submit([1, 2], processor="len")
    node.wait(done)
    node.wait(failed)
    dom = dump_dom(node.url + "/")
    # Rows rendered by the page's script (class "live"), not only by the server.
    assert f'class="live" data-node-id="{node.backend.node_id}"' in dom
    assert f'class="live" data-job-id="{done}"' in dom
    assert f'class="live" data-job-id="{failed}"' in dom
    assert 'class="status-completed"' in dom and 'class="status-failed"' in dom
    assert "<progress" in dom and "TypeError" in dom
    assert 'id="updated">updated ' in dom  # the refresh succeeded
    assert "<polyline" in dom


def test_status_page_asks_for_the_token(node_factory, dump_dom) -> None:
    node = node_factory(auth_token="page-token")
    job = node.request("POST", "/submit_job", {"data": [1], "processor_func": "square"},
                       headers={"Authorization": "Bearer page-token"})[2]["job_id"]
    dom = dump_dom(node.url + "/")
    assert '<section id="login">' in dom  # shown, no longer hidden
    assert job not in dom
