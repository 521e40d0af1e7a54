"""The request model under any input (hypothesis): a valid request or a clear refusal.

At the model, a refusal is pydantic's ``ValidationError``; at the producer's edge
(``validate_request``) it is ``InputError``, a ``SegqError`` whose problems name the field.
Nothing else escapes, and what is accepted is exactly what Segmind will be sent.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producer.enqueueing import validate_request
from shared.errors import InputError
from shared.request_model import (
    ASPECT_RATIO_SIZES,
    MAX_PROMPT_CHARS,
    SAMPLERS,
    SCHEDULERS,
    GenerationRequest,
    parameter_names,
)

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
names = st.sampled_from(parameter_names()) | st.text(max_size=12)
any_params = st.dictionaries(names, json_values, max_size=8)

valid_params = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=200).filter(lambda t: t.strip() and "\x00" not in t)},
    optional={
        "negative_prompt": st.text(max_size=200),
        "sampler": st.sampled_from(SAMPLERS),
        "scheduler": st.sampled_from(SCHEDULERS),
        "steps": st.integers(1, 70),
        "guidance_scale": st.floats(1, 15),
        "seed": st.integers(0, 2**63 - 1),
        "width": st.integers(64, 2048),
        "height": st.integers(64, 2048),
        "aspect_ratio": st.sampled_from(list(ASPECT_RATIO_SIZES)),
        "batch_size": st.integers(1, 10),
        "image_format": st.sampled_from(["jpeg", "png", "webp"]),
        "image_quality": st.integers(10, 100),
        "base64": st.booleans(),
    },
)


def assert_sendable(request: GenerationRequest) -> None:
    """What an accepted request guarantees: in range, JSON as the client sends it, and read
    back to the same request from its body and from what a job record stores."""
    assert len(request.prompt) <= MAX_PROMPT_CHARS and request.prompt.strip()
    assert 1 <= request.steps <= 70 and 1 <= request.batch_size <= 10
    assert math.isfinite(request.guidance_scale) and 1 <= request.guidance_scale <= 15
    assert all(64 <= side <= 2048 for side in request.image_size())
    body = request.upstream_body()
    json.dumps(body, allow_nan=False)
    assert GenerationRequest.model_validate(body) == request
    assert GenerationRequest.model_validate(request.stored_params()) == request


@BOUNDED
@given(params=any_params)
def test_any_parameters_give_a_sendable_request_or_a_validation_error(params):
    try:
        request = GenerationRequest.model_validate(params)
    except ValidationError as exc:
        assert exc.errors(include_url=False)
        return
    assert_sendable(request)


@BOUNDED
@given(params=any_params)
def test_at_the_edge_any_parameters_give_a_request_or_an_input_error_naming_the_field(params):
    try:
        request = validate_request(params, {}, where="line 7")
    except InputError as exc:
        assert exc.problems and all(line.startswith("line 7: ") for line in exc.problems)
        unknown = set(params) - set(parameter_names())
        named = " ".join(exc.problems)
        assert all(name in named for name in unknown)
        return
    assert_sendable(request)


@BOUNDED
@given(params=valid_params)
def test_every_value_in_range_is_accepted_as_given(params):
    request = GenerationRequest.model_validate(params)
    assert_sendable(request)
    kept = request.model_dump(include=set(params))
    assert {name: trimmed(value) for name, value in kept.items()} == {
        name: trimmed(value) for name, value in params.items()
    }


def trimmed(value: object) -> object:
    """Texts up to surrounding whitespace (pydantic strips Unicode White_Space only)."""
    return value.strip() if isinstance(value, str) else value


@BOUNDED
@given(prompt=st.text(max_size=50), padding=st.integers(0, 2 * MAX_PROMPT_CHARS))
def test_a_prompt_is_accepted_exactly_when_its_text_fits(prompt, padding):
    text = prompt + "x" * padding
    fits = 1 <= len(text.strip()) <= MAX_PROMPT_CHARS and "\x00" not in text
    try:
        request = GenerationRequest(prompt=text)
    except ValidationError as exc:
        assert not fits
        [error] = exc.errors(include_url=False)
        assert error["loc"] == ("prompt",)
        return
    assert fits and request.prompt.strip() == text.strip()


@BOUNDED
@given(
    name=st.sampled_from(["steps", "batch_size", "width", "height", "image_quality", "seed"]),
    value=st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=10) | st.booleans(),
)
def test_a_number_out_of_range_or_of_the_wrong_type_is_refused_by_name(name, value):
    try:
        request = GenerationRequest.model_validate({"prompt": "p", name: value})
    except ValidationError as exc:
        assert {error["loc"][0] for error in exc.errors(include_url=False)} == {name}
        return
    assert_sendable(request)
    # accepted: the number itself, or a text that spells it (CSV files and --set give texts)
    assert getattr(request, name) == (int(value) if isinstance(value, str) else value)


@pytest.mark.parametrize("name", ["steps", "guidance_scale", "seed", "width", "image_quality"])
def test_true_or_false_in_a_number_field_is_refused_not_read_as_one_or_zero(name):
    with pytest.raises(ValidationError, match="expected a number, got true"):
        GenerationRequest.model_validate({"prompt": "p", name: True})


def test_choices_are_trimmed_like_the_other_texts():
    request = GenerationRequest.model_validate(
        {"prompt": " a fox ", "image_format": " png", "sampler": "euler "}
    )
    assert (request.prompt, request.image_format, request.sampler) == ("a fox", "png", "euler")
