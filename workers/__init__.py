"""segq's Celery workers: ``celery -A workers worker`` (or ``segq worker``) runs them."""

from workers.celery_app import app

__all__ = ["app"]
