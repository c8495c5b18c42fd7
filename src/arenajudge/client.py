"""A small Python client for ``arenajudge serve``.

>>> judge = Judge("http://127.0.0.1:8000")
>>> judge("What is 2+2?", "4", "5")["verdict"]
'model_a'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from arenajudge.errors import ArenaJudgeError, DataError, MissingDependencyError

try:
    import httpx
except ImportError as exc:  # the serve extra is optional
    raise MissingDependencyError(
        "httpx is not installed; install it with `pip install arenajudge[serve]`"
    ) from exc

Side = str | Sequence[str | None]
"""A prompt or response: one string, or a list of turns."""


class Judge:
    """Client of a running judge service.

    Parameters
    ----------
    url : str
        Base URL of the service, e.g. ``"http://127.0.0.1:8000"``.
    timeout : float, default=60
        Seconds to wait for each answer.

    Calls return the service's JSON: per battle ``winner_model_a``,
    ``winner_model_b``, ``winner_tie``, ``verdict`` and, with ``swap=True``,
    ``swapped``. A rejected request raises :class:`DataError` with the server's
    explanation (which field of which battle is wrong).
    """

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __call__(
        self,
        prompt: Side,
        response_a: Side,
        response_b: Side,
        *,
        tie_rate: float | None = None,
        swap: bool = False,
    ) -> dict[str, Any]:
        """Judge one battle; returns its result."""
        battle = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
        return self.judge([battle], tie_rate=tie_rate, swap=swap)[0]

    def judge(
        self,
        battles: Iterable[Mapping[str, Any]],
        *,
        tie_rate: float | None = None,
        swap: bool = False,
    ) -> list[dict[str, Any]]:
        """Judge battles (mappings with ``prompt``, ``response_a``, ``response_b`` and an
        optional ``id``) in one request; results come back in the same order."""
        body: dict[str, Any] = {"battles": [dict(battle) for battle in battles], "swap": swap}
        if tie_rate is not None:
            body["tie_rate"] = tie_rate
        return self._request("POST", "/v1/judge", json=body)["results"]

    def health(self) -> bool:
        """Whether the service is up with its model loaded."""
        try:
            return self._http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def model(self) -> dict[str, Any]:
        """Name, version, manifest hash and manifest of the served model."""
        return self._request("GET", "/v1/model")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ArenaJudgeError(
                f"cannot reach the judge service at {self.url} ({exc}); "
                "is `arenajudge serve` running?"
            ) from None
        if response.is_success:
            return response.json()
        detail = _detail(response)
        if response.status_code in (400, 413, 422):
            raise DataError(f"the judge service rejected the request: {detail}")
        raise ArenaJudgeError(f"the judge service answered {response.status_code}: {detail}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _detail(response: httpx.Response) -> str:
    """The server's ``detail`` as one line: ``field: message; ...`` for 422s."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
    if isinstance(detail, list):
        return "; ".join(
            f"{item.get('field', '?')}: {item.get('message', '')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)
