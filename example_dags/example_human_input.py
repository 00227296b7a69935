"""
A Dify workflow that stops at a Human Input node asks its question in Airflow.

When the run pauses, the task raises the form under Required Actions (and in the REST API): its content as
the subject, its actions as the options, its inputs (with their defaults) as the form fields. The answer goes
back to Dify, the run resumes, and the task waits on until it ends. Needs Airflow 3.1+ (human-in-the-loop).
``make demo`` answers the form itself, as a reviewer would through the REST API.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

#: The published workflow version with the Human Input node (the demo's emulator serves one under this id).
REVIEW_WORKFLOW_ID = "3f1c9a52-7d4e-4b8a-9c6f-0e2d5b7a8c41"

with DAG(
    dag_id="example_wfrun_human_input",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"review_workflow_id": REVIEW_WORKFLOW_ID},
    tags=["example", "wfrun", "dify", "human-in-the-loop"],
):
    draft = RunWorkflowOperator(
        task_id="draft_and_review",
        conn_id="wfrun_dify",
        workflow_id="{{ params.review_workflow_id }}",
        inputs={"query": "Write a two-line release note for version 2.0"},
        deferrable=True,
        poll_interval=2,
        timeout=3600,  # a person has up to an hour; then the run is canceled
    )

    @task
    def publish(result: dict) -> str:
        answer = result["outputs"].get("approval", {})
        print(f"The reviewer chose {answer.get('action')!r} ({answer.get('comment') or 'no comment'})")
        return str(answer.get("action"))

    publish(draft.output)
