"""The add-on's HTTP client shows the server's words: problem details' `detail`, else `error`, else DRF's fields."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client_module():
    # client.py is standard library only: loaded on its own, without bpy or the add-on package.
    spec = importlib.util.spec_from_file_location(
        "render_market_client", ROOT / "blender_addon" / "render_market" / "client.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_problem_details_detail_wins_over_error(client_module):
    body = {
        "type": "about:blank",
        "title": "Payment Required",
        "status": 402,
        "detail": "this job needs 3.00 tokens in your wallet: top up and accept again",
        "error": "old words",
    }
    assert client_module.server_words(body, 402) == body["detail"]


def test_the_error_field_is_shown_when_there_is_no_detail(client_module):
    assert client_module.server_words({"error": "no such scene"}, 404) == "no such scene"


def test_field_errors_are_joined_and_other_bodies_named_by_status(client_module):
    words = client_module.server_words({"scene": ["This field is required."], "samples": ["Too big."]}, 400)
    assert words == "scene: This field is required.; samples: Too big."
    assert client_module.server_words("<h1>Bad Gateway</h1>", 502) == "HTTP 502: <h1>Bad Gateway</h1>"
    assert client_module.server_words(None, 500) == "HTTP 500"


def test_a_missing_url_or_token_is_said_before_any_request(client_module):
    with pytest.raises(client_module.ApiError, match="set the server URL"):
        client_module.Client("", "tok.x")
    with pytest.raises(client_module.ApiError, match="set your API token"):
        client_module.Client("http://127.0.0.1:9", " ")


def test_an_unreachable_server_is_named(client_module):
    api = client_module.Client("http://127.0.0.1:9", "tok.x", timeout=5)
    with pytest.raises(client_module.ApiError, match=r"^cannot reach the server at http://127.0.0.1:9: "):
        api.scene(1)
