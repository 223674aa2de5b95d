"""The user's token travels in a Secret named by the pod: found, decoded, or refused with the reason."""

from __future__ import annotations

import base64

import pytest

from slurmlink.core.errors import PodRejected
from slurmlink.identity.pod_token import access_token

POD = {"metadata": {"name": "p", "annotations": {"slurmlink.io/token-secret": "tok"}}}


def secret(**fields: object) -> dict[str, object]:
    return {"metadata": {"name": "tok"}, **fields}


def test_token_from_data_and_string_data() -> None:
    assert access_token(POD, [secret(data={"access_token": base64.b64encode(b"eyJ.a.b\n").decode()})]) == "eyJ.a.b"
    assert access_token(POD, [secret(stringData={"access_token": " eyJ.c.d "})]) == "eyJ.c.d"


@pytest.mark.parametrize("pod, secrets, words", [
    ({"metadata": {"name": "p"}}, [], "names no token Secret"),
    (POD, [], "was not sent with the pod"),
    (POD, [secret(data={"other": "eA=="})], "has no key 'access_token'"),
    (POD, [secret(data={"access_token": "%%%"})], "not valid base64"),
])
def test_missing_or_broken_tokens_are_refused_with_the_reason(pod: dict[str, object], secrets: list[dict[str, object]],
                                                               words: str) -> None:
    with pytest.raises(PodRejected) as err:
        access_token(pod, secrets)
    assert words in err.value.message
    assert err.value.reason in ("NoToken", "InvalidPod")
