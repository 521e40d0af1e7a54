"""The parameters of one `stable-diffusion-3.5-turbo-txt2img` request, validated at the edge.

Defaults and ranges follow the seed API page (`shared/upstream/` in the steering repo), with one
deliberate deviation: the page says steps 10-70 yet defaults to and sends 4, so 1-70 is accepted.
The same model validates producer input, batch file lines and, in the sandbox, request bodies.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODEL_SLUG = "stable-diffusion-3.5-turbo-txt2img"

MAX_PROMPT_CHARS = 4000
"""Longer prompts are refused: the text encoders truncate far below this, and it bounds a job
record's size in Redis."""

SAMPLERS: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
    "ipndm", "ipndm_v", "deis", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip

SCHEDULERS: tuple[str, ...] = (
    "normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
)  # fmt: skip

ASPECT_RATIO_SIZES: dict[str, tuple[int, int] | None] = {
    "custom": None,
    "1:1 square 1024x1024": (1024, 1024),
    "3:4 portrait 896x1152": (896, 1152),
    "5:8 portrait 832x1216": (832, 1216),
    "9:16 portrait 768x1344": (768, 1344),
    "9:21 portrait 640x1536": (640, 1536),
    "4:3 landscape 1152x896": (1152, 896),
    "3:2 landscape 1216x832": (1216, 832),
    "16:9 landscape 1344x768": (1344, 768),
    "21:9 landscape 1536x640": (1536, 640),
}

Sampler = Literal[SAMPLERS]  # type: ignore[valid-type]
Scheduler = Literal[SCHEDULERS]  # type: ignore[valid-type]
AspectRatio = Literal[tuple(ASPECT_RATIO_SIZES)]  # type: ignore[valid-type]


class GenerationRequest(BaseModel):
    """One image generation request; unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("low quality, blurry", max_length=MAX_PROMPT_CHARS)
    sampler: Sampler = "dpmpp_2m"
    scheduler: Scheduler = "sgm_uniform"
    steps: int = Field(4, ge=1, le=70)
    guidance_scale: float = Field(1.0, ge=1, le=15)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    width: int = Field(1024, ge=64, le=2048)
    height: int = Field(1024, ge=64, le=2048)
    aspect_ratio: AspectRatio = "custom"
    batch_size: int = Field(1, ge=1, le=10)
    image_format: Literal["jpeg", "png", "webp"] = "jpeg"
    image_quality: int = Field(95, ge=10, le=100)
    base64: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        """pydantic strips Unicode White_Space only, so a prompt of separators such as U+001F
        would pass ``min_length``: refuse what Python's ``str.strip`` leaves empty too."""
        if "\x00" in prompt:
            raise ValueError("prompt contains a NUL character")
        if not prompt.strip():
            raise ValueError("prompt has no text, only whitespace or separator characters")
        return prompt

    @field_validator("sampler", "scheduler", "aspect_ratio", "image_format", mode="before")
    @classmethod
    def _choice_trimmed(cls, value: Any) -> Any:
        """Choices are trimmed like every other text (a CSV's ``a fox, 6, png``): pydantic's
        ``str_strip_whitespace`` does not reach ``Literal`` fields."""
        return value.strip() if isinstance(value, str) else value

    @field_validator("steps", "guidance_scale", "seed", "width", "height", "batch_size",
                     "image_quality", mode="before")  # fmt: skip
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        """pydantic takes ``true`` for 1 in a number field; in a request that is a mistake
        (a shifted column, say), not a number."""
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    def image_size(self) -> tuple[int, int]:
        """Width and height the image will have: the preset's, or width x height for custom."""
        return ASPECT_RATIO_SIZES[self.aspect_ratio] or (self.width, self.height)

    def upstream_body(self) -> dict[str, Any]:
        """The JSON body for `POST /v2/{slug}`: every parameter, a seed only when one was given."""
        return self.model_dump(exclude_none=True)

    def stored_params(self) -> dict[str, Any]:
        """Only what differs from the defaults, so a job record does not repeat them per job."""
        return self.model_dump(exclude_defaults=True)


def parameter_names() -> list[str]:
    """Names accepted in a request (for `--set NAME=VALUE` and batch file headers)."""
    return list(GenerationRequest.model_fields)
