"""Behaviour every route shares: bad ids and bad characters are 4xx, never a 500."""

import pytest

from webapp import create_app


@pytest.mark.parametrize("url", ["/imports/99999999999999999999", "/customers/2147483648"])
def test_an_id_too_large_for_the_database_is_a_404(owner_client, url):
    assert owner_client.get(url).status_code == 404


@pytest.mark.parametrize("url", ["/customers/?q=a%00b", "/catalog/?q=%00"])
def test_nul_characters_are_refused_with_a_reason(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)


def test_behind_a_proxy_the_client_address_is_the_forwarded_one(tmp_path):
    """The login lock counts failures per address: the visitor's, not the proxy's."""
    app = create_app("test", {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "PROXY_COUNT": 1})

    @app.route("/_whoami")
    def whoami():
        from flask import request

        return request.remote_addr

    whoami.is_public = True
    response = app.test_client().get("/_whoami", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.get_data(as_text=True) == "203.0.113.9"
