"""A person's browser on Companion's authorization endpoint: it signs in, reads the consent page and answers it
with form posts, as a person clicking does, and hands back where the server sent it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2

from server.services.demo import DEMO_PASSWORD
from tests.console import csrf_of


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def query_of(url: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}


def sealed_request_of(page: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', page)
    assert match, page
    return unescape(match.group(1))


async def open_consent(
    browser: httpx2.AsyncClient, authorize_url: str, *, email: str, password: str = DEMO_PASSWORD
) -> httpx2.Response:
    """Follow the authorization URL as a browser does, signing in when asked; the page it ends on (the consent
    page), or the redirect back to the client when consent was remembered or the request was refused."""
    response = await browser.get(authorize_url)
    for _ in range(6):
        if response.status_code not in (302, 303):
            return response
        location = response.headers["location"]
        target = urlsplit(location)
        if target.netloc and target.netloc != browser.base_url.netloc.decode():
            return response
        if target.path == "/login":
            login = await browser.get(location)
            nxt = query_of(location).get("next", "/")
            response = await browser.post(
                "/login", data={"email": email, "password": password, "csrf": csrf_of(login.text), "next": nxt}
            )
            continue
        response = await browser.get(location)
    return response


async def consent(
    browser: httpx2.AsyncClient,
    authorize_url: str,
    *,
    email: str,
    decision: str = "allow",
    person_facing: bool = False,
) -> str:
    """Sign in, answer the consent page, and return the URL the server sent the browser back to."""
    page = await open_consent(browser, authorize_url, email=email)
    if page.status_code in (302, 303):
        return page.headers["location"]
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "request": sealed_request_of(page.text), "decision": decision}
    if person_facing:
        form["person_facing"] = "on"
    answer = await browser.post("/oauth/consent", data=form)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def authorize_url(base_url: str, **params: str) -> str:
    return f"{base_url}/authorize?{urlencode({'response_type': 'code', **params})}"
