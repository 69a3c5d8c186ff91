"""Tokens and JWK sets for tests/keys.rs, made as an application or an
identity provider makes them: with PyJWT and cryptography.

Reads a JSON spec on stdin:
  {"session": A, "other": B, "secrets": {"new", "old", "stranger"},
   "issuer": ISS, "audience": AUD}
and writes JSON to stdout:
  {"jwks": the provider's set at the edge's start (kids rsa-1, ec-1, ed-1),
   "jwks_later": the same set plus rsa-2, a key the provider adds later,
   "tokens": {name: token}}
Every token is for session A, with ISS and AUD and an `exp` 10 minutes
ahead, unless its name says otherwise. Keys are made fresh on every run.
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    spec = json.load(sys.stdin)
    now = int(time.time())
    keys = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
        "ed-1": ed25519.Ed25519PrivateKey.generate(),
        "rsa-2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    forger_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forger_ec = ec.generate_private_key(ec.SECP256R1())

    def jwk(kid):
        key = keys[kid].public_key()
        kind = {"rsa": RSAAlgorithm, "ec-": ECAlgorithm, "ed-": OKPAlgorithm}[kid[:3]]
        out = kind.to_jwk(key, as_dict=True)
        out.update(kid=kid, use="sig")
        return out

    start = {"keys": [jwk(k) for k in ("rsa-1", "ec-1", "ed-1")]}
    later = {"keys": start["keys"] + [jwk("rsa-2")]}

    base = {"sub": spec["session"], "exp": now + 600, "iat": now,
            "iss": spec["issuer"], "aud": spec["audience"]}
    secrets = spec["secrets"]

    def claims(**changes):
        c = dict(base, **changes)
        return {k: v for k, v in c.items() if v is not None}

    def signed(alg, key, kid=None, **changes):
        headers = {"kid": kid} if kid else None
        return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)

    # HS256 "signed" with the RSA key's public PEM: what an algorithm
    # confusion attack sends. PyJWT refuses to make it, so it is made here.
    public_pem = keys["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    confusion = f"{head}.{body}.{b64(mac)}"

    tokens = {
        "hs256 new secret": signed("HS256", secrets["new"]),
        "hs256 old secret": signed("HS256", secrets["old"]),
        "rs256": signed("RS256", keys["rsa-1"], "rsa-1"),
        "es256": signed("ES256", keys["ec-1"], "ec-1"),
        "eddsa": signed("EdDSA", keys["ed-1"], "ed-1"),
        "rs256 added later": signed("RS256", keys["rsa-2"], "rsa-2"),
        "hs256 stranger secret": signed("HS256", secrets["stranger"]),
        "rs256 forged": signed("RS256", forger_rsa, "rsa-1"),
        "es256 forged": signed("ES256", forger_ec, "ec-1"),
        "rs256 other session": signed("RS256", keys["rsa-1"], "rsa-1", sub=spec["other"]),
        "hs256 other session": signed("HS256", secrets["new"], sub=spec["other"]),
        "none": jwt.encode(claims(), None, algorithm="none"),
        "none naming rsa-1": jwt.encode(claims(), None, algorithm="none",
                                        headers={"kid": "rsa-1"}),
        "hs256 over the rsa public key": confusion,
        "rs256 naming the ec key": signed("RS256", keys["rsa-1"], "ec-1"),
        "es256 naming the rsa key": signed("ES256", keys["ec-1"], "rsa-1"),
        "hs512 new secret": signed("HS512", secrets["new"]),
        "rs256 expired": signed("RS256", keys["rsa-1"], "rsa-1", exp=now - 60),
        "hs256 expired": signed("HS256", secrets["old"], exp=now - 60),
        "rs256 wrong iss": signed("RS256", keys["rsa-1"], "rsa-1", iss="https://elsewhere/"),
        "es256 wrong aud": signed("ES256", keys["ec-1"], "ec-1", aud="another-app"),
        "eddsa no aud": signed("EdDSA", keys["ed-1"], "ed-1", aud=None),
        "hs256 no iss": signed("HS256", secrets["new"], iss=None),
    }
    json.dump({"jwks": start, "jwks_later": later, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
