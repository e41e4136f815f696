"""Red team of `kaeru demo --cross-site`: the fake log-in box never sends the raw e-mail,
even submitted by the browser itself (Enter pressed before the page's script took the form
over, or scripts off): the form has no field a submission would carry."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from aiohttp import web

from adserver.demo.pages import add_demo_routes
from tests.test_crosssite_demo import SITES, Client, ClientFactory, text


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> Client:
    app = web.Application()
    add_demo_routes(app, SITES)
    return await aiohttp_client(app)


class LoginForm(HTMLParser):
    """The names of the fields the log-in form would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.found, self.submitted = False, False, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and attributes.get("id") == "login":
            self.inside = self.found = True
        elif self.inside and tag in ("input", "select", "textarea") and attributes.get("name"):
            self.submitted.append(str(attributes["name"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


@pytest.mark.parametrize("path", ["/demo/shop/", "/demo/shop/p/sku-102", "/demo/partner/"])
async def test_the_log_in_form_submits_no_e_mail(client: Client, path: str) -> None:
    form = LoginForm()
    form.feed(await text(client, path))
    assert form.found
    assert form.submitted == []
