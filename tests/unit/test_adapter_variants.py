"""
Property-based: realistic variants of every documented example payload read without a failed poll.

From each example in tests/fixtures (the seeds and the reference), hypothesis draws variants: the emulator's
realistic transforms (numbers as text, ints and floats swapped, fractional times, offsets, errors as objects
or text, outputs as JSON text, ids as numbers, lists for objects, nulls, missing and extra fields, huge
numbers), one non-essential field replaced by an arbitrary JSON value (NaN and infinities included), and
unknown status words. Whatever comes, only typed errors escape; with a readable run id and status word the
run has exactly those; money is exact; the result dict is strict JSON.
"""

from __future__ import annotations

import copy
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_wfrun.emulator.variants import EXTRA_FIELDS, VARIANTS, vary
from airflow_provider_wfrun.exceptions import InvalidResponseError, WorkflowRunError
from airflow_provider_wfrun.models import RunStatus, WorkflowRun
from airflow_provider_wfrun.platforms import get_adapter
from airflow_provider_wfrun.platforms.base import MONEY_LIMIT, MONEY_MAX_PLACES, OUTPUT_VALUE_KEY

FIXTURES = Path(__file__).parent.parent / "fixtures"
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Every example of a run's state: (platform, fixture, how it is read, essential fields, where the run is).
RUN_EXAMPLES = [
    ("dify", "dify/run_detail_service_api.json", "run", ("id", "status"), ()),
    ("dify", "dify/run_detail_chatflow_zh.json", "run", ("id", "status"), ()),
    ("dify", "dify/blocking_response.json", "submit", ("id", "status"), ("data",)),
    ("gptbots", "gptbots/query_result_succeed.json", "run", ("workflowRunId", "status"), ()),
    ("gptbots", "gptbots/invoke_async_pending.json", "submit", ("workflowRunId", "status"), ()),
    ("chenyu", "chenyu/execution_succeeded.json", "run", ("status",), ("data",)),
    ("chenyu", "chenyu/execution_reference_example.json", "run", ("status",), ("data",)),
    ("chenyu", "chenyu/submit_queued.json", "submit", ("run_order_id", "run_status"), ("data",)),
]
VARIANT_NAMES = [*VARIANTS, "extra_fields"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def at(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        payload = payload[key]
    return payload


def read(platform: str, how: str, payload: Any) -> WorkflowRun:
    adapter = get_adapter(platform)
    if how == "submit":
        return adapter.parse_submit(payload)
    return adapter.parse_run(payload, run_id="wfrun_1" if platform == "chenyu" else "run-1")


def check(platform: str, how: str, payload: dict[str, Any], where: tuple[str, ...]) -> None:
    """The properties every variant must keep."""
    try:
        run = read(platform, how, payload)
    except WorkflowRunError:
        return  # typed: acceptable only when an essential field is unreadable (asserted by the callers)
    body = at(payload, where)
    word = body.get("run_status" if "run_status" in body else "status")
    if isinstance(word, str):
        assert run.platform_status == word
        assert run.status is get_adapter(platform).statuses.get(word, RunStatus.UNKNOWN)
    for name in ("id", "workflowRunId", "run_order_id"):
        if isinstance(body.get(name), str):
            assert run.run_id == body[name]
    assert isinstance(run.outputs, dict)
    for amount in (run.cost.total, run.cost.compute, run.cost.external):
        assert amount is None or (amount.is_finite() and abs(amount) < MONEY_LIMIT)
    result = run.result_dict()
    outputs = result.pop("outputs")
    json.dumps(result, allow_nan=False)  # ours is strict JSON; outputs carry the platform's values as sent
    json.dumps(outputs)


def too_fine(amount: Decimal) -> bool:
    exponent = amount.as_tuple().exponent
    return isinstance(exponent, int) and exponent < -MONEY_MAX_PLACES


def wire_amount(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())


@pytest.mark.parametrize(("platform", "name", "how", "essential", "where"), RUN_EXAMPLES)
@EXAMPLES
@given(names=st.sets(st.sampled_from(VARIANT_NAMES)), seed=st.integers(0, 2**32))
def test_realistic_variants_read_with_the_right_id_and_status(
    platform, name, how, essential, where, names, seed
):
    payload = fixture(name)
    body = at(payload, where)
    varied = vary(body, names, essential=essential, seed=seed)
    if where:
        payload[where[0]] = varied
    else:
        payload = varied
    run = read(platform, how, payload)  # id and status untouched: it must read, whatever else changed
    check(platform, how, payload, where)
    if "extra_fields" in names:
        assert run.raw == payload
        assert all(key in json.dumps(run.raw) for key in EXTRA_FIELDS)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "1.5", "NaN", "-inf", "1e999", "0x10", "2026-05-08T10:00:00+08:00", "{", "[1,"]),
    st.sampled_from(['{"message": "boom"}', '["a", 1]', '"text"', "12", "null"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize(("platform", "name", "how", "essential", "where"), RUN_EXAMPLES)
@EXAMPLES
@given(data=st.data())
def test_any_value_in_a_non_essential_field_never_fails_the_read(platform, name, how, essential, where, data):
    payload = fixture(name)
    body = at(payload, where)
    optional = sorted(set(body) - set(essential))
    field = data.draw(st.sampled_from(optional), label="field")
    body[field] = data.draw(JSON_VALUES, label="value")
    read(platform, how, payload)  # must not raise: only the run id and status may fail a read
    check(platform, how, payload, where)


@pytest.mark.parametrize(("platform", "name", "how", "essential", "where"), RUN_EXAMPLES)
@EXAMPLES
@given(value=JSON_VALUES)
def test_essential_fields_fail_only_with_a_typed_error_naming_them(
    platform, name, how, essential, where, value
):
    payload = fixture(name)
    body = at(payload, where)
    field = essential[0] if platform != "chenyu" or how == "submit" else "status"
    body[field] = value
    try:
        run = read(platform, how, payload)
    except InvalidResponseError as exc:
        error: InvalidResponseError | None = exc
    else:
        error = None
    if error is not None:
        assert error.field is not None
        assert field in error.field
        return
    assert isinstance(value, str)
    if field == "status":
        assert run.platform_status == value


@EXAMPLES
@given(word=st.text(min_size=1, max_size=20))
def test_unknown_status_words_are_kept_and_never_terminal(word):
    adapter = get_adapter("gptbots")
    payload = fixture("gptbots/query_result_succeed.json") | {"status": word}
    run = adapter.parse_run(payload, run_id="x")
    assert run.platform_status == word
    assert run.status is adapter.statuses.get(word, RunStatus.UNKNOWN)
    assert run.is_terminal is (word in ("SUCCEED", "FAILED"))


AMOUNTS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**11), max_value=10**11),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**14), max_value=10**14),
)


@EXAMPLES
@given(field=st.sampled_from(["compute_cost", "external_model_cost", "total_cost"]), amount=AMOUNTS)
def test_execution_money_is_exact_or_none(field, amount):
    payload = fixture("chenyu/execution_succeeded.json")
    payload["data"][field] = str(amount) if isinstance(amount, Decimal) else amount
    run = get_adapter("chenyu").parse_run(payload, run_id="wfrun_1")
    key = {"compute_cost": "compute", "external_model_cost": "external", "total_cost": "total"}[field]
    value = getattr(run.cost, key)
    expected = wire_amount(payload["data"][field])
    if not expected.is_finite() or abs(expected) >= MONEY_LIMIT or too_fine(expected):
        assert value is None
    else:
        assert value == expected
        assert json.loads(json.dumps(run.result_dict()))["cost"][key] == format(value, "f")


@EXAMPLES
@given(
    field=st.sampled_from(["quote_amount", "final_amount", "released_amount", "total_cost"]), text=st.text()
)
def test_settlement_amounts_are_exact_text_or_the_settlement_is_refused(field, text):
    adapter = get_adapter("chenyu")
    run = adapter.parse_run(fixture("chenyu/execution_succeeded.json"), run_id="wfrun_314ff7d8b7a5beff1388")
    info = fixture("chenyu/info_succeeded.json")
    info["data"][field] = text
    try:
        settled = adapter.apply_settlement(run, info)
    except InvalidResponseError as exc:
        refused: InvalidResponseError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.field == f"data.{field}"
        return
    assert settled.settlement is not None
    expected = Decimal(text.strip()) if text.strip() else None
    got = settled.cost.total if field == "total_cost" else getattr(settled.settlement, field.split("_")[0])
    assert got == expected if expected is not None else got in (None, run.cost.total)


def test_outputs_that_are_not_an_object_are_kept_under_the_documented_key():
    adapter = get_adapter("gptbots")
    base = fixture("gptbots/query_result_succeed.json")
    as_text = adapter.parse_run(base | {"output": json.dumps(base["output"])}, run_id="x")
    assert as_text.outputs == base["output"]
    for value in (["a", "b"], "plain text", 42, '["x"]'):
        run = adapter.parse_run(base | {"output": value}, run_id="x")
        assert run.outputs == {OUTPUT_VALUE_KEY: json.loads(value) if value == '["x"]' else value}


def test_deeply_nested_payload_is_a_typed_error_not_a_recursion_error():
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    payload = fixture("dify/run_detail_service_api.json") | {"outputs": deep, "error": deep}
    run = get_adapter("dify").parse_run(payload, run_id="r")
    assert run.status is RunStatus.SUCCEEDED
    nested_status = copy.deepcopy(fixture("chenyu/execution_succeeded.json"))
    nested_status["data"]["queue_info"] = deep
    assert get_adapter("chenyu").parse_run(nested_status, run_id="wfrun_1").queue_position is None


def test_each_unreadable_field_is_logged_once_per_run(caplog):
    adapter = get_adapter("dify")
    payload = fixture("dify/run_detail_service_api.json") | {"total_tokens": "many", "elapsed_time": "nan"}
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wfrun.platforms.base"):
        for _ in range(3):
            run = adapter.parse_run(payload, run_id=payload["id"])
        adapter.parse_run(payload | {"id": "another-run"}, run_id="another-run")
    messages = [record.getMessage() for record in caplog.records]
    assert (run.cost.tokens, run.duration_seconds) == (None, 1.0)  # elapsed from created/finished
    run_id = payload["id"]
    assert (
        messages.count(
            f"dify run {run_id}: field 'total_tokens' could not be read (got str 'many'); it is left empty, "
            "and the answer is kept whole in the run's raw"
        )
        == 1
    )
    assert sum("'elapsed_time'" in message and run_id in message for message in messages) == 1
    assert sum("another-run" in message for message in messages) == 2
    assert run.raw["total_tokens"] == "many"
