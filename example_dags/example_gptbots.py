"""Ask a GPTBots workflow for today's news; its credits cost lands in XCom."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_wfrun.operators.workflow_run import RunWorkflowOperator

with DAG(
    dag_id="example_wfrun_gptbots",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "wfrun", "gptbots"],
):
    news = RunWorkflowOperator(
        task_id="today_news",
        conn_id="wfrun_gptbots",
        inputs={"topic": "News"},
        deferrable=True,
        poll_interval=2,
    )

    @task
    def report(result: dict) -> str:
        cost = result["cost"]
        print(f"GPTBots run {result['run_id']}: {cost['total']} {cost['currency']}, {cost['tokens']} tokens")
        return result["status"]

    report(news.output)
