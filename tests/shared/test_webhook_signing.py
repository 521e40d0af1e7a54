"""Webhook signatures: what a receiver's check accepts and what it refuses."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from shared.webhook_signing import DEFAULT_TOLERANCE_S, sign, signature_digest, verify

SECRET = "whsec_unit"
NOW = 1_790_000_000


@given(body=st.binary(max_size=2000), secret=st.text(min_size=1, max_size=64))
def test_a_signed_body_verifies_with_its_secret_and_not_with_another(body, secret):
    header = sign(body, secret, timestamp=NOW)
    assert verify(body, header, secret, now=NOW)
    assert not verify(body, header, secret + "x", now=NOW)


@given(body=st.binary(min_size=1, max_size=500), flip=st.integers(min_value=0))
def test_any_changed_byte_breaks_the_signature(body, flip):
    header = sign(body, SECRET, timestamp=NOW)
    index = flip % len(body)
    tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    assert not verify(tampered, header, SECRET, now=NOW)


def test_the_digest_is_hmac_sha256_of_timestamp_dot_body_as_documented():
    expected = hmac.new(b"s3cret", b"1790000000.{}", hashlib.sha256).hexdigest()
    assert signature_digest(b"{}", "s3cret", NOW) == expected
    assert sign(b"{}", "s3cret", timestamp=NOW) == f"t={NOW},v1={expected}"


def test_a_delivery_older_or_newer_than_the_tolerance_is_refused_as_a_replay():
    header = sign(b"{}", SECRET, timestamp=NOW)
    assert verify(b"{}", header, SECRET, now=NOW + DEFAULT_TOLERANCE_S)
    assert not verify(b"{}", header, SECRET, now=NOW + DEFAULT_TOLERANCE_S + 1)
    assert not verify(b"{}", header, SECRET, now=NOW - DEFAULT_TOLERANCE_S - 1)
    assert verify(b"{}", header, SECRET, now=NOW + 30, tolerance_s=60)


def test_one_matching_v1_among_several_is_enough_during_a_secret_rotation():
    old = signature_digest(b"{}", "old-secret", NOW)
    new = signature_digest(b"{}", SECRET, NOW)
    assert verify(b"{}", f"t={NOW}, v1={old}, v1={new}", SECRET, now=NOW)
    assert verify(b"{}", f"t={NOW},v1={old}", "old-secret", now=NOW)
    assert not verify(b"{}", f"t={NOW},v1={old}", SECRET, now=NOW)


@given(header=st.text(max_size=200))
def test_a_malformed_header_is_refused_never_raised(header):
    assert verify(b"{}", header, SECRET, now=NOW) is False


def test_a_timestamp_that_is_no_integer_is_refused_never_raised():
    digest = signature_digest(b"{}", SECRET, NOW)
    for stamp in ("\u00b2", "1.5", "9" * 5000, ""):
        assert verify(b"{}", f"t={stamp},v1={digest}", SECRET, now=NOW) is False


def test_a_header_with_two_timestamps_or_no_digest_is_refused():
    digest = signature_digest(b"{}", SECRET, NOW)
    assert not verify(b"{}", f"t={NOW},t={NOW + 1},v1={digest}", SECRET, now=NOW)
    assert not verify(b"{}", f"t={NOW}", SECRET, now=NOW)
    assert not verify(b"{}", f"t=-{NOW},v1={digest}", SECRET, now=NOW)
