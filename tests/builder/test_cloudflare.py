"""The KV client: envelopes unwrapped, failures classified, paging followed."""

from __future__ import annotations

import httpx
import pytest

from builder.cloudflare import KVClient, make_http_client, parse_retry_after
from builder.config import Target
from builder.errors import APIError, RateLimitedError, RetryableAPIError
from tests.builder.fakekv import ACCOUNT, BASE, NAMESPACE, TOKEN, FakeKV, envelope


def test_bulk_put_then_get_round_trips(kv: KVClient, fake: FakeKV) -> None:
    """Values written in bulk read back byte for byte, with their TTL sent along."""
    result = kv.bulk_put(
        [{"key": "u:a", "value": '{"x":"é"}', "expiration_ttl": 60}, {"key": "u:b", "value": ""}]
    )
    assert (result.successful_key_count, result.unsuccessful_keys) == (2, [])
    assert kv.bulk_get(["u:a", "u:b", "u:c"]) == {"u:a": '{"x":"é"}', "u:b": "", "u:c": None}
    assert fake.ttl == {"u:a": 60, "u:b": None}


def test_unsuccessful_keys_are_reported(kv: KVClient, fake: FakeKV) -> None:
    """Keys the API could not write come back in ``unsuccessful_keys``."""
    fake.refuse_keys = {"u:b"}
    result = kv.bulk_put([{"key": "u:a", "value": "1"}, {"key": "u:b", "value": "2"}])
    assert result.unsuccessful_keys == ["u:b"]
    assert result.successful_key_count == 1


def test_429_carries_retry_after(kv: KVClient, fake: FakeKV) -> None:
    """A 429 becomes RateLimitedError with the server's retry-after in seconds."""
    fake.fault("PUT bulk", 429, headers={"retry-after": "17"})
    with pytest.raises(RateLimitedError) as info:
        kv.bulk_put([{"key": "k", "value": "v"}])
    assert info.value.retry_after == 17.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable(kv: KVClient, fake: FakeKV, status: int) -> None:
    """5xx and 408 are worth retrying."""
    fake.fault("POST bulk/delete", status)
    with pytest.raises(RetryableAPIError):
        kv.bulk_delete(["k"])


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retryable(kv: KVClient, fake: FakeKV, status: int) -> None:
    """4xx other than 408/429 raise a plain APIError carrying the API's error text."""
    fake.fault("PUT bulk", status)
    with pytest.raises(APIError) as info:
        kv.bulk_put([{"key": "k", "value": "v"}])
    assert not isinstance(info.value, RetryableAPIError)
    assert f"injected {status}" in str(info.value)
    assert info.value.status == status


def test_transport_failures_are_retryable(kv: KVClient, fake: FakeKV) -> None:
    """Timeouts and dropped connections are retryable and keep the cause."""
    fake.raise_on("PUT bulk", httpx.ReadTimeout("slow"))
    fake.raise_on("PUT bulk", httpx.RemoteProtocolError("dropped"))
    for expected in (httpx.ReadTimeout, httpx.RemoteProtocolError):
        with pytest.raises(RetryableAPIError) as info:
            kv.bulk_put([{"key": "k", "value": "v"}])
        assert isinstance(info.value.__cause__, expected)


def test_truncated_success_body_is_retryable(kv: KVClient, fake: FakeKV) -> None:
    """A 200 whose body is cut off is an unknown outcome, so it is retried."""
    fake.faults.append(("PUT bulk", lambda _r: httpx.Response(200, content=b'{"success": tr')))
    with pytest.raises(RetryableAPIError, match="unreadable"):
        kv.bulk_put([{"key": "k", "value": "v"}])


def test_success_false_in_a_200_is_an_error(kv: KVClient, fake: FakeKV) -> None:
    """The envelope's ``success`` decides, not only the status code."""
    fake.fault("PUT bulk", 200, body=envelope(success=False, errors=[{"code": 1, "message": "no"}]))
    with pytest.raises(APIError, match="1: no"):
        kv.bulk_put([{"key": "k", "value": "v"}])


def test_list_keys_follows_the_cursor(kv: KVClient, fake: FakeKV) -> None:
    """Listing by prefix returns every key across pages of at least 10."""
    fake.store.update({f"seg:{i:03d}:v3": "x" for i in range(25)} | {"u:x": "y"})
    names = [k.name for k in kv.list_keys("seg:", limit=10)]
    assert names == sorted(f"seg:{i:03d}:v3" for i in range(25))
    assert fake.count("GET keys") == 3


def test_get_value_encodes_the_key_and_maps_404_to_none(kv: KVClient, fake: FakeKV) -> None:
    """Single reads percent-encode the key; a missing key is None."""
    fake.store["shell:home:v/1"] = "<html>"
    assert kv.get_value("shell:home:v/1") == b"<html>"
    assert kv.get_value("nope") is None
    assert "shell%3Ahome%3Av%2F1" in fake.requests[0][1]


def test_http_client_sends_the_bearer_token_without_exposing_it() -> None:
    """The token is a default header and stays out of the target's repr."""
    target = Target(BASE, ACCOUNT, NAMESPACE, TOKEN)
    fake = FakeKV()
    with make_http_client(target, transport=fake.transport()) as http:
        kv = KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)
        kv.bulk_put([{"key": "k", "value": "v"}])
    assert fake.store == {"k": "v"}
    assert TOKEN not in repr(target)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None),
     ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)  # fmt: skip
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """retry-after is delta-seconds or an HTTP date, never negative."""
    assert parse_retry_after(header, now=1445412480.0) == expected


def test_wrong_token_is_refused_by_the_fake(fake: FakeKV) -> None:
    """The fake checks auth like the real API, so tests cannot pass without a token."""
    with httpx.Client(base_url=BASE + "/", transport=fake.transport()) as http:
        kv = KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)
        with pytest.raises(APIError) as info:
            kv.bulk_put([{"key": "k", "value": "v"}])
    assert info.value.status == 403


def test_an_api_echoing_the_token_does_not_put_it_in_the_error() -> None:
    """An error envelope that quotes the Authorization header is redacted before it is kept."""

    def echo(request: httpx.Request) -> httpx.Response:
        message = "Invalid request headers: " + request.headers["authorization"] + " x" * 200
        errors = [{"code": 6003, "message": message}]
        return httpx.Response(400, json=envelope(None, success=False, errors=errors))

    target = Target(BASE, ACCOUNT, NAMESPACE, TOKEN)
    with make_http_client(target, transport=httpx.MockTransport(echo)) as http:
        kv = KVClient(http, account_id=ACCOUNT, namespace_id=NAMESPACE)
        with pytest.raises(APIError) as info:
            kv.bulk_put([{"key": "k", "value": "v"}])
    assert "Bearer [redacted]" in str(info.value)
    assert TOKEN not in str(info.value)
    assert TOKEN[:12] not in str(info.value)
