"""Schemathesis hook: signs every request the way zgrid clients do (crates/types/src/auth.rs).

`Authorization: Zgrid key=<base58>,ts=<unix>,nonce=<hex>,sig=<hex>`, an ed25519 signature over
`zgrid/request/v2` 0x00 METHOD \\n path?query \\n ts \\n nonce \\n body length \\n hex(BLAKE3(body)).
The signature is made by a requests auth handler, so it covers the bytes actually sent. It
replaces the placeholder that schemathesis sends for the `zgrid_signature` security scheme
(schemathesis.toml sets it to `sign-me`), and only that: a request schemathesis sends without
the header, or with another value, to check that the API refuses it goes out as it is.

Keys come from the environment as 32-byte seeds in hex: ZGRID_FUZZ_USER_SEED (a registered user)
signs everything but what only a node may send (node registration, heartbeats, results), which
ZGRID_FUZZ_NODE_SEED (a registered node) signs. A user registration is signed by the key it
registers when that key is one this hook generated (so registrations can succeed). The node
feed is signed by the user, so it is always refused rather than held open.

It also teaches schemathesis the string formats of the document that JSON Schema does not
define, so the values it generates as valid are valid: `zgrid-public-key` (a real ed25519 key),
`ipv4-network`, `ipv6-network`, `ip-address` and `ip-network`.

JSON Schema counts `2.0` as an integer and schemathesis sends such whole numbers as floats; the
explorer reads integers with serde, which takes only integers (and says so with a 400). The hook
sends whole numbers the way every zgrid client writes them, as integers.
"""

import json
import os
import re
import secrets
import time
from urllib.parse import urlsplit

import blake3
from hypothesis import strategies as st
import nacl.signing
import requests
import schemathesis

MARKER = "sign-me"
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# The keys the `zgrid-public-key` format generated, by their base58 form.
GENERATED: dict[str, nacl.signing.SigningKey] = {}
NODE_SIGNED = re.compile(r"^/v1/nodes$|^/v1/nodes/[^/]+/heartbeat$|^/v1/workloads/[^/]+/results$")


def base58(data: bytes) -> str:
    """Bitcoin-alphabet base58, as the `bs58` crate writes keys."""
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = ALPHABET[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def key(variable: str) -> nacl.signing.SigningKey:
    seed = os.environ.get(variable)
    if not seed:
        raise RuntimeError(f"{variable} must hold the 32-byte seed (hex) of a registered zgrid key")
    return nacl.signing.SigningKey(bytes.fromhex(seed))


USER = key("ZGRID_FUZZ_USER_SEED")
NODE = key("ZGRID_FUZZ_NODE_SEED")


class ZgridAuth(requests.auth.AuthBase):
    """Signs a prepared request: method, path and query, timestamp, fresh nonce and body."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.headers.get("Authorization") != MARKER:
            return request
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        path = request.path_url
        signer = self.signer(request.method, urlsplit(path).path, body)
        ts = int(time.time())
        nonce = secrets.token_hex(16)
        message = (
            f"zgrid/request/v2\0{request.method.upper()}\n{path}\n{ts}\n{nonce}\n"
            f"{len(body)}\n{blake3.blake3(body).hexdigest()}"
        ).encode()
        signature = signer.sign(message).signature.hex()
        public = base58(bytes(signer.verify_key))
        request.headers["Authorization"] = f"Zgrid key={public},ts={ts},nonce={nonce},sig={signature}"
        return request


    @staticmethod
    def signer(method: str, path: str, body: bytes) -> nacl.signing.SigningKey:
        if method == "POST" and path == "/v1/users":
            try:
                registered = json.loads(body).get("public_key")
            except (ValueError, AttributeError):
                registered = None
            if isinstance(registered, str) and registered in GENERATED:
                return GENERATED[registered]
        if method == "POST" and NODE_SIGNED.match(path):
            return NODE
        return USER


def generated_key(seed: bytes) -> str:
    """A new key from `seed`, remembered so the hook can sign as it; its base58 form."""
    key = nacl.signing.SigningKey(seed)
    public = base58(bytes(key.verify_key))
    GENERATED[public] = key
    return public


def prefixes(addresses, bits):
    return st.tuples(addresses, st.integers(0, bits)).map(lambda pair: f"{pair[0]}/{pair[1]}")


schemathesis.openapi.format("zgrid-public-key", st.binary(min_size=32, max_size=32).map(generated_key))
schemathesis.openapi.format("ipv4-network", prefixes(st.ip_addresses(v=4), 32))
schemathesis.openapi.format("ipv6-network", prefixes(st.ip_addresses(v=6), 128))
schemathesis.openapi.format("ip-address", st.ip_addresses().map(str))
schemathesis.openapi.format(
    "ip-network", st.one_of(prefixes(st.ip_addresses(v=4), 32), prefixes(st.ip_addresses(v=6), 128))
)


def integers(value):
    """`value` with whole floats made integers, recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {name: integers(item) for name, item in value.items()}
    if isinstance(value, list):
        return [integers(item) for item in value]
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (dict, list, float)):
        case.body = integers(case.body)
    kwargs["auth"] = ZgridAuth()
