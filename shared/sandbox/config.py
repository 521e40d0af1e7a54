"""Every knob of the sandbox: simulated GPUs and time, the account, rate limits and faults.

One pydantic model serves the command line (one option per field, see
``producer/commands/sandbox.py``), the in-process runner and the control API, whose
``POST /_sandbox/faults`` takes a JSON object with any subset of these fields (a patch).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_FAIL_ERROR = "NSFW content detected. Try running it again, or try a different prompt."


class SandboxConfig(BaseModel):
    """What the sandbox simulates and which faults it injects; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Simulated GPUs and time.
    gpus: int = Field(
        default=8, ge=1, le=1_000_000, description="Jobs that run at once; later ones wait QUEUED."
    )
    inference_mean_s: float = Field(
        default=2.5, gt=0, le=3600, description="Mean inference time of one 1024x1024 image."
    )
    inference_sigma: float = Field(
        default=0.25,
        ge=0,
        le=3,
        description="Sigma of the lognormal inference time (0: always the mean).",
    )
    min_queue_s: float = Field(
        default=0.2,
        ge=0,
        le=3600,
        description="Least time a job stays QUEUED, even with a GPU free.",
    )
    time_scale: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Multiplies inference and queue times (0.02: 2.5 s -> 0.05 s).",
    )
    retention_s: float = Field(
        default=3600.0,
        gt=0,
        description="A finished request id answers 404 this long after it finished.",
    )
    media_retention_s: float = Field(
        default=86400.0,
        gt=0,
        description="Outputs and ground truth are kept this long after finishing.",
    )
    random_seed: int | None = Field(
        default=None,
        description="Seed of inference times, unseeded images and fault draws; unset: random.",
    )
    public_url: str | None = Field(
        default=None,
        description="Origin for status_url, response_url and outputs; unset: the Host called.",
    )

    # The account.
    api_keys: list[str] = Field(
        default_factory=list, description="Valid API keys; empty: any non-empty key is valid."
    )
    forbidden_keys: list[str] = Field(
        default_factory=list, description="Keys answered 403: the account may not use the model."
    )
    model_retired: bool = Field(
        default=False, description="Submits answer 410: the model is retired."
    )
    credits: float = Field(
        default=1e9,
        ge=0,
        description="Account balance in USD; setting it (patch) tops the account up.",
    )
    cost_per_image: float = Field(
        default=0.01, ge=0, description="USD billed per image of a COMPLETED job."
    )
    spend_limit: float | None = Field(
        default=None, ge=0, description="Team spend limit in USD; submits beyond it answer 406."
    )

    # Rate limits: a strict sliding window per API key.
    submit_rpm: int | None = Field(
        default=None, ge=1, description="Submits admitted per window per key; unset: unlimited."
    )
    poll_rpm: int | None = Field(
        default=None,
        ge=1,
        description="Status and result GETs admitted per window per key; unset: unlimited.",
    )
    rate_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Window the *_rpm limits count in (60: per minute).",
    )
    retry_after_header: bool = Field(
        default=False,
        description="429s also carry Retry-After (Segmind is said to send only the reset time).",
    )

    # Jobs that fail.
    fail_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance a job ends FAILED."
    )
    fail_error: str = Field(
        default=DEFAULT_FAIL_ERROR, min_length=1, description="Error of FAILED jobs."
    )
    fail_marker: str | None = Field(
        default="[fail]", description="A prompt containing this text always ends FAILED (tests)."
    )
    late_validation: bool = Field(
        default=False,
        description="Accept invalid bodies at submit; the job then ends FAILED (a quirk).",
    )

    # Transport faults, on the v2 API only (media and control endpoints are never faulty).
    error_500_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance of a JSON 500."
    )
    error_502_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance of an HTML 502."
    )
    error_503_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance of an HTML 503."
    )
    error_504_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance of an HTML 504."
    )
    drop_probability: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Chance the connection is closed before anything is done.",
    )
    lost_answer_probability: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Chance a submit is accepted (and billed) but its connection closes before "
        "the answer: the client cannot tell it from a drop.",
    )
    slow_probability: float = Field(
        default=0.0, ge=0, le=1, description="Chance an answer is delayed."
    )
    slow_s: float = Field(default=5.0, ge=0, le=600, description="Delay of a slow answer.")
    hold_s: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="While set, every v2 call waits until it is unset, this long at most: tests "
        "catch calls under way at a moment of their choosing.",
    )
    outage: bool = Field(default=False, description="Every v2 call answers 503 HTML while on.")
    outage_s: float | None = Field(
        default=None, gt=0, description="With outage on: it ends by itself after this many seconds."
    )

    @field_validator("public_url")
    @classmethod
    def _origin_without_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url else None

    def patched(self, patch: dict[str, Any]) -> SandboxConfig:
        """A copy with ``patch`` applied and validated as a whole (ValidationError if not)."""
        return SandboxConfig.model_validate({**self.model_dump(), **patch})

    def error_probabilities(self) -> tuple[tuple[int, float], ...]:
        """The injected HTTP errors and their chances, in the order they are drawn."""
        return (
            (500, self.error_500_probability),
            (502, self.error_502_probability),
            (503, self.error_503_probability),
            (504, self.error_504_probability),
        )
