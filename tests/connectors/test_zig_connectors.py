"""The Zig connectors (vector-topk, crypto, encode), the Zig SDK's template and its HTTP
side: each builds and passes `flowforge connector test`, and behaves as documented
(known test vectors, edge cases, a large top-k)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from flowforge.runtime import ConnectorFailed, LoadedComponent, Sandbox
from tests.cli import run_cli
from tests.connectors.support import (
    BUILD_TIMEOUT_S,
    CONNECTORS,
    call,
    connector_test,
    failure_kind,
    load,
    output,
    passes_its_examples,
)

ZIG_CONNECTORS = ["vector-topk", "crypto", "encode"]
HTTP_FIXTURE = Path(__file__).resolve().parent / "zig_http"


def _load(sandbox: Sandbox, name: str) -> LoadedComponent:
    return load(sandbox, CONNECTORS / name, "zig")


@pytest.fixture(scope="module")
def topk(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, "vector-topk")


@pytest.fixture(scope="module")
def crypto(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, "crypto")


@pytest.fixture(scope="module")
def encode(sandbox: Sandbox) -> LoadedComponent:
    return _load(sandbox, "encode")


# --- flowforge connector test ------------------------------------------------------------


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("name", ZIG_CONNECTORS)
def test_connector_passes_its_examples(name: str) -> None:
    # Several examples, at least one of them an expected failure.
    passes_its_examples(name)


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_a_new_zig_connector_builds_and_passes_as_generated(tmp_path: Path) -> None:
    created = run_cli(
        "connector", "new", "acme/greeter", "--lang", "zig", "--description", "Greets people",
        "--dir", str(tmp_path),
    )  # fmt: skip
    assert created.code == 0, created.stderr
    folder = tmp_path / "greeter"
    assert "{{" not in (folder / "connector.toml").read_text()
    tested = connector_test(folder)
    assert tested.json["connector"] == "acme/greeter"
    assert tested.json["summary"]["failed"] == 0


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_the_sdk_maps_http_statuses_and_reads_retry_after() -> None:
    # The fixture connector sends a POST with headers and a JSON body, then applies the
    # SDK's status mapping; an injected 429 must come back rate-limited with Retry-After.
    result = connector_test(HTTP_FIXTURE, "--fault", "http-429", "--fault", "reset")
    examples = {example["name"]: example for example in result.json["examples"]}
    faults = {f["fault"]: f for f in examples["404 is not-found"]["faults"]}
    assert faults["http-429"]["kind"] == "rate-limited"
    assert faults["http-429"]["retry_after_ms"] is not None
    assert faults["http-429"]["retry_after_ms"] > 0
    assert faults["reset"]["kind"] == "unavailable"
    assert faults["reset"]["retryable"] is True


# --- crypto -------------------------------------------------------------------------------

# RFC 4231 HMAC-SHA256 test cases 1-4, 6 and 7 (5 truncates its output): key, data (hex).
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(),
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size "
     b"data. The key needs to be hashed before being used by the HMAC algorithm.".hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "data", "expected"), RFC4231)
def test_hmac_sign_matches_rfc_4231(
    sandbox: Sandbox, crypto: LoadedComponent, key: str, data: str, expected: str
) -> None:
    # The vectors are checked against Python's own hmac too, so a typo here cannot hide.
    assert hmac.new(bytes.fromhex(key), bytes.fromhex(data), "sha256").hexdigest() == expected
    config = {"operation": "hmac-sign", "key_encoding": "hex", "data_encoding": "hex"}
    outcome = call(sandbox, crypto, config, {"data": data}, {"signing-key": key})
    assert output(outcome) == {"signature": expected}


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ],
)
def test_sha256_known_vectors(
    sandbox: Sandbox, crypto: LoadedComponent, data: str, digest: str
) -> None:
    assert output(call(sandbox, crypto, {"operation": "sha256"}, {"data": data})) == {
        "digest": digest
    }


def test_sha256_in_base64_and_base64url(sandbox: Sandbox, crypto: LoadedComponent) -> None:
    data = "ünïcode ✓ " * 100
    raw = hashlib.sha256(data.encode()).digest()
    for encoding, expected in [
        ("base64", base64.b64encode(raw).decode()),
        ("base64url", base64.urlsafe_b64encode(raw).decode()),
    ]:
        config = {"operation": "sha256", "encoding": encoding}
        assert output(call(sandbox, crypto, config, {"data": data})) == {"digest": expected}


def test_sha256_needs_no_secret(sandbox: Sandbox, crypto: LoadedComponent) -> None:
    assert "digest" in output(call(sandbox, crypto, {"operation": "sha256"}, {"data": "x"}))


def test_verify_accepts_the_right_signature_in_any_case_and_padding(
    sandbox: Sandbox, crypto: LoadedComponent
) -> None:
    key, body = "whsec_abc", '{"id":1}'
    mac = hmac.new(key.encode(), body.encode(), "sha256").digest()
    secrets = {"signing-key": key}
    cases = [
        ({"encoding": "hex", "prefix": "sha256="}, "sha256=" + mac.hex().upper()),
        ({"encoding": "base64"}, base64.b64encode(mac).decode()),
        ({"encoding": "base64url"}, base64.urlsafe_b64encode(mac).decode().rstrip("=")),
    ]
    for config, signature in cases:
        outcome = call(
            sandbox, crypto, {"operation": "hmac-verify", **config},
            {"data": body, "signature": signature}, secrets,
        )  # fmt: skip
        assert output(outcome) == {"valid": True}, config


@pytest.mark.parametrize(
    "signature",
    [
        "0" * 64,  # well formed, wrong
        "sha256=",  # nothing after the prefix
        "zz" * 32,  # not hex
        "ab" * 31,  # one byte short
        "ab" * 33,  # one byte long
        "",
    ],
)
def test_verify_mismatch_is_valid_false_not_a_failure(
    sandbox: Sandbox, crypto: LoadedComponent, signature: str
) -> None:
    outcome = call(
        sandbox, crypto, {"operation": "hmac-verify"},
        {"data": "payload", "signature": signature}, {"signing-key": "k"},
    )  # fmt: skip
    assert output(outcome) == {"valid": False}


def test_verify_without_a_signature_is_invalid_input(
    sandbox: Sandbox, crypto: LoadedComponent
) -> None:
    outcome = call(
        sandbox, crypto, {"operation": "hmac-verify"}, {"data": "x"}, {"signing-key": "k"}
    )
    assert failure_kind(outcome) == "invalid-input"


def test_a_bad_key_encoding_never_echoes_the_key(sandbox: Sandbox, crypto: LoadedComponent) -> None:
    config = {"operation": "hmac-sign", "key_encoding": "base64"}
    outcome = call(sandbox, crypto, config, {"data": "x"}, {"signing-key": "not*base64"})
    assert isinstance(outcome, ConnectorFailed), outcome
    assert outcome.failure.kind == "invalid-config"
    assert "not*base64" not in outcome.failure.message


def test_an_unknown_operation_is_invalid_config(sandbox: Sandbox, crypto: LoadedComponent) -> None:
    assert failure_kind(call(sandbox, crypto, {"operation": "md5"}, {"data": "x"})) == (
        "invalid-config"
    )


# --- encode -------------------------------------------------------------------------------

TEXTS = ["", "f", "fo", "foo", "héllo wörld/?&=+~ ✓", "\x00\x01 control \x7f", "日本語" * 50]


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_python_and_round_trips(
    sandbox: Sandbox, encode: LoadedComponent, text: str
) -> None:
    raw = text.encode()
    expected = {
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "url": urllib.parse.quote(text, safe="~"),
    }
    for scheme, encoded in expected.items():
        config = {"operation": "encode", "scheme": scheme}
        assert output(call(sandbox, encode, config, {"data": text})) == {"data": encoded}
        back = call(sandbox, encode, {"operation": "decode", "scheme": scheme}, {"data": encoded})
        assert output(back) == {"data": text}, scheme


def test_unpadded_base64_encodes_and_decodes(sandbox: Sandbox, encode: LoadedComponent) -> None:
    for scheme in ("base64", "base64url"):
        config = {"operation": "encode", "scheme": scheme, "padding": False}
        assert output(call(sandbox, encode, config, {"data": "fo"})) == {"data": "Zm8"}
        decoded = call(sandbox, encode, {"operation": "decode", "scheme": scheme}, {"data": "Zm8"})
        assert output(decoded) == {"data": "fo"}


@pytest.mark.parametrize(
    ("scheme", "data"),
    [
        ("base64", "Zm9v!"),
        ("base64", "Zm8=="),  # wrong padding
        ("base64", "Z"),  # cannot be a length of base64
        ("base64url", "+/8="),  # standard alphabet given to url-safe
        ("base64", "-_8="),  # url-safe alphabet given to standard
        ("hex", "0g"),
        ("hex", "abc"),
        ("url", "%"),
        ("url", "%4"),
        ("url", "%zz"),
        ("hex", "c328"),  # decodes to bytes that are not UTF-8
    ],
)
def test_invalid_input_to_decode_is_invalid_input(
    sandbox: Sandbox, encode: LoadedComponent, scheme: str, data: str
) -> None:
    outcome = call(sandbox, encode, {"operation": "decode", "scheme": scheme}, {"data": data})
    assert failure_kind(outcome) == "invalid-input"


def test_url_decoding_leaves_plus_alone(sandbox: Sandbox, encode: LoadedComponent) -> None:
    outcome = call(sandbox, encode, {"operation": "decode", "scheme": "url"}, {"data": "a+b%2Bc"})
    assert output(outcome) == {"data": "a+b+c"}


def test_an_unknown_scheme_is_invalid_config(sandbox: Sandbox, encode: LoadedComponent) -> None:
    outcome = call(sandbox, encode, {"operation": "encode", "scheme": "rot13"}, {"data": "x"})
    assert failure_kind(outcome) == "invalid-config"


# --- vector-topk --------------------------------------------------------------------------


def _expected_topk(
    query: list[float], items: list[dict[str, Any]], k: int
) -> list[tuple[Any, float]]:
    qn = math.sqrt(sum(q * q for q in query))
    scored = []
    for item in items:
        v = item["vector"]
        vn = math.sqrt(sum(x * x for x in v))
        dot = sum(a * b for a, b in zip(query, v, strict=True))
        scored.append((item["id"], 0.0 if qn * vn == 0 else dot / (qn * vn)))
    scored.sort(key=lambda hit: (-hit[1], hit[0]))
    return scored[:k]


def test_topk_over_1000_vectors_of_64(sandbox: Sandbox, topk: LoadedComponent) -> None:
    rng = random.Random(7)
    dim, count, k = 64, 1000, 10
    items = [
        {"id": f"doc-{i:04d}", "vector": [rng.uniform(-1, 1) for _ in range(dim)]}
        for i in range(count)
    ]
    query = [rng.uniform(-1, 1) for _ in range(dim)]
    request = json.dumps({"query": query, "items": items, "k": k})
    sandbox.run(topk, input=request)  # warm: the first run pays for page faults
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        outcome = sandbox.run(topk, input=request)
        timings.append(time.perf_counter() - started)
    results = output(outcome)["results"]
    expected = _expected_topk(query, items, k)
    assert [r["id"] for r in results] == [hit[0] for hit in expected]
    for got, (_, score) in zip(results, expected, strict=True):
        assert got["score"] == pytest.approx(score, abs=1e-12)
    median_ms = sorted(timings)[len(timings) // 2] * 1000
    print(f"\nvector-topk 1000x64 k=10: invoke median {median_ms:.1f} ms "
          f"(input {len(request) / 1024:.0f} KiB)")  # fmt: skip
    assert median_ms < 2000


def test_topk_ties_and_k_beyond_the_items(sandbox: Sandbox, topk: LoadedComponent) -> None:
    items = [
        {"id": "b", "vector": [1, 1]},
        {"id": 10, "vector": [2, 2]},
        {"id": 9, "vector": [3, 3]},
        {"id": "a", "vector": [4, 4]},
        {"id": "zero", "vector": [0, 0]},
    ]
    results = output(call(sandbox, topk, {}, {"query": [1, 1], "items": items, "k": 50}))
    assert [r["id"] for r in results["results"]] == [9, 10, "a", "b", "zero"]
    assert results["results"][-1]["score"] == 0


def test_topk_default_k_is_10(sandbox: Sandbox, topk: LoadedComponent) -> None:
    items = [{"id": i, "vector": [1, i]} for i in range(30)]
    results = output(call(sandbox, topk, {}, {"query": [1, 0], "items": items}))["results"]
    assert [r["id"] for r in results] == list(range(10))


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"query": [1, 2], "items": [{"id": "a", "vector": [1, 2, 3]}]}, "3 dimensions"),
        ({"query": [1, 2], "items": [{"id": "a", "vector": [1, "x"]}]}, "expected shape"),
        ({"query": [1], "items": [{"id": 1.5, "vector": [1]}]}, "string or an integer"),
        ({"query": [1], "items": [], "k": 0}, "at least 1"),
        ({"query": [], "items": []}, "empty"),
        ({"items": []}, "required field is missing"),
    ],
)
def test_topk_invalid_input_says_what_is_wrong(
    sandbox: Sandbox, topk: LoadedComponent, request_: dict[str, Any], words: str
) -> None:
    outcome = call(sandbox, topk, {}, request_)
    assert isinstance(outcome, ConnectorFailed), outcome
    assert outcome.failure.kind == "invalid-input"
    assert words in outcome.failure.message
