"""
What this provider needs from newer Airflow or common-compat releases, with a stand-in where one lacks it.

``mask_secret`` is in common-compat's ``sdk`` from 1.22.0 (Python 3.11+); before, it is
``airflow.sdk.log.mask_secret``, which every supported Airflow has.

``ResumableJobMixin`` (and the ``task_state_store`` it writes to) arrived in Airflow 3.3; common-compat
hands out the SDK class or its own stand-in from 1.23.0, which needs Python 3.11. Below both, the local
stand-in keeps the operator importable and behaves as the SDK does with ``durable=False``: every try
submits its own run (the chenyu idempotency key still deduplicates a retried submit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from airflow.providers.common.compat.sdk import mask_secret
except ImportError:  # common-compat < 1.22
    from airflow.sdk.log import mask_secret

if TYPE_CHECKING:
    from airflow.sdk import ResumableJobMixin
else:
    try:
        from airflow.providers.common.compat.sdk import ResumableJobMixin
    except ImportError:  # common-compat < 1.23
        try:
            from airflow.sdk import ResumableJobMixin
        except ImportError:  # Airflow < 3.3

            class ResumableJobMixin:
                """Airflow < 3.3 stand-in: no ``task_state_store`` to resume from."""

                external_id_key: str = "remote_job_id"

                def __init__(self, *, durable: bool = False, **kwargs: Any) -> None:
                    super().__init__(**kwargs)
                    self.durable = False

                def execute_resumable(self, context: Any) -> Any:
                    external_id = self.submit_job(context)
                    self.poll_until_complete(external_id, context)
                    return self.get_job_result(external_id, context)


__all__ = ["ResumableJobMixin", "mask_secret"]
