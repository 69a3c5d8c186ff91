"""Create sessions on a weir edge (``POST /v1/sessions``) with the standard library only."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any, Dict, Mapping, Optional

from ._errors import WeirError


def _post_json(url: str, body: Mapping[str, Any], headers: Mapping[str, str], timeout: float) -> Dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - caller's edge URL
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")[:500]
        raise WeirError(f"POST {url} answered {e.code}: {detail}") from None


async def create_session(
    edge_url: str,
    *,
    agent: str = "external",
    input: Optional[Mapping[str, Any]] = None,  # noqa: A002 - the API's field name
    api_key: Optional[str] = None,
    timeout: float = 10.0,
) -> Dict[str, Any]:
    """``POST {edge_url}/v1/sessions`` and return the answer ``{"id","token","ws_url","events_url"}``.

    With the default ``agent="external"`` the session waits for an outside producer, e.g. a
    :class:`weir.Publisher` fed by :func:`weir.autogen.stream_to_weir`.
    """
    body: Dict[str, Any] = {"agent": agent}
    if input is not None:
        body["input"] = dict(input)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = edge_url.rstrip("/") + "/v1/sessions"
    return await asyncio.to_thread(_post_json, url, body, headers, timeout)
