"""segq's producer: the Python API (sync and asyncio) and, in ``producer.cli``, the `segq` command.

Everything an app needs is importable from here; the names in ``__all__`` are the public API.
"""

from producer.api import JobHandle, Producer
from producer.api_async import AsyncJobHandle, AsyncProducer
from producer.enqueueing import BatchLine, BatchReceipt
from producer.failures import FailureReason
from shared.errors import (
    ConfigurationError,
    InputError,
    JobNotCompleted,
    JobNotFound,
    SegqError,
    StoreError,
    WaitTimeout,
)
from shared.fleet_state import FleetState, RateLimitState, Resumed
from shared.job_model import Job, JobFailure, JobState
from shared.job_store import BatchSummary
from shared.request_model import GenerationRequest

__all__ = [
    "AsyncJobHandle",
    "AsyncProducer",
    "BatchLine",
    "BatchReceipt",
    "BatchSummary",
    "ConfigurationError",
    "FailureReason",
    "FleetState",
    "GenerationRequest",
    "InputError",
    "Job",
    "JobFailure",
    "JobHandle",
    "JobNotCompleted",
    "JobNotFound",
    "JobState",
    "Producer",
    "RateLimitState",
    "Resumed",
    "SegqError",
    "StoreError",
    "WaitTimeout",
]
