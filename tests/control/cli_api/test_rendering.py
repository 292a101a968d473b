"""The client's pieces that need no server: output rendering, server addresses, and how
a refused call reads."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf.any_pb2 import Any as AnyDetail
from google.rpc import error_details_pb2, status_pb2

from flowforge.control.api.client import ClientConfigError, RpcFailure, parse_server
from flowforge.control.cli.output import Table, render
from flowforge.control.cli.run_view import event_of, run_document
from flowforge.control.storage import EventType, RunState
from flowforge.proto.v1 import run_pb2


def test_a_table_pads_every_column_but_the_last() -> None:
    table = Table(["RUN", "STATUS", "NOTE"], [["r1", "succeeded", "fine"], ["r22", "failed", ""]])
    assert table.lines() == [
        "RUN  STATUS     NOTE",
        "r1   succeeded  fine",
        "r22  failed",
    ]
    assert Table(["A"], [], "(no runs)").lines() == ["(no runs)"]


def test_json_and_yaml_print_the_same_document() -> None:
    doc = {"id": "r1", "steps": [{"id": "a", "output": {"n": 1}}], "note": "café"}
    assert json.loads(render("json", doc, ["ignored"])) == doc
    assert yaml.safe_load(render("yaml", doc, ["ignored"])) == doc
    assert render("table", doc, ["line one", "line two"]) == "line one\nline two"
    assert render("table", doc, lambda: Table(["X"], [[1]])) == "X\n1"


@pytest.mark.parametrize(
    ("server", "address", "tls"),
    [
        ("127.0.0.1:7000", "127.0.0.1:7000", False),
        ("http://ff.example.com:80", "ff.example.com:80", False),
        ("https://ff.example.com", "ff.example.com:50051", True),
        ("grpcs://ff.example.com:443/", "ff.example.com:443", True),
        ("[::1]:9000", "[::1]:9000", False),
        ("localhost", "localhost:50051", False),
    ],
)
def test_server_addresses(server: str, address: str, tls: bool) -> None:
    target = parse_server(server)
    assert (target.address, target.tls) == (address, tls)


def test_a_ca_file_means_tls() -> None:
    assert parse_server("127.0.0.1:7000", Path("ca.pem")).tls


@pytest.mark.parametrize(
    ("server", "said"),
    [
        ("ftp://x:1", "unknown scheme 'ftp'"),
        ("http://x:1/api", "with no path"),
        ("x:port", "the port 'port' is not a number"),
        ("::1:9000", "put an IPv6 address in brackets"),
        (":9000", "the host is missing"),
    ],
)
def test_bad_server_addresses_say_what_to_write(server: str, said: str) -> None:
    with pytest.raises(ClientConfigError, match=said.replace("(", r"\(")):
        parse_server(server)


def _rpc_error(code: grpc.StatusCode, message: str, *details: object) -> grpc.aio.AioRpcError:
    packed = []
    for detail in details:
        holder = AnyDetail()
        holder.Pack(detail)  # type: ignore[arg-type]
        packed.append(holder)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, message)


def test_an_invalid_argument_lists_each_violation_and_exits_2() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="steps.a.needs", description="wf.yaml:5:12: needs unknown step 'b'"
            ),
            error_details_pb2.BadRequest.FieldViolation(
                field="steps.c.uses", description="wf.yaml:8:11: acme/x is not installed"
            ),
        ]
    )
    failure = RpcFailure.of(
        _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "the workflow has 2 problems:\n  ...", bad)
    )
    assert failure.exit_code == 2
    assert failure.text().splitlines() == [  # the message's own list is not repeated
        "INVALID_ARGUMENT: the workflow has 2 problems:",
        "  steps.a.needs: wf.yaml:5:12: needs unknown step 'b'",
        "  steps.c.uses: wf.yaml:8:11: acme/x is not installed",
    ]


def test_refusals_carry_a_hint_and_exit_1() -> None:
    failure = RpcFailure.of(_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "unknown token"))
    assert failure.exit_code == 1 and failure.kind == "unauthenticated"
    assert "hint: set --token or $FLOWFORGE_TOKEN" in failure.text()
    down = RpcFailure.of(_rpc_error(grpc.StatusCode.UNAVAILABLE, "connect failed"), "h:1")
    assert "reachable at h:1?" in down.text()
    precondition = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="run-finished", subject="runs/r1", description="run r1 has finished"
            )
        ]
    )
    finished = RpcFailure.of(
        _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "run r1 has finished", precondition)
    )
    assert "  runs/r1: run r1 has finished" in finished.text()


def test_streamed_events_fold_into_the_runs_state() -> None:
    started = run_pb2.RunEvent(
        run_id="r1", seq=1, type="run-started", data_json=json.dumps({"steps": ["a", "b"]})
    )
    done = run_pb2.RunEvent(
        run_id="r1", seq=2, type="step-succeeded", step="a", data_json='{"output": {"n": 1}}'
    )
    future = run_pb2.RunEvent(run_id="r1", seq=3, type="step-teleported", step="a")
    events = [event_of(m) for m in (started, done, future)]
    assert events[2] is None  # an event type this client does not know is skipped
    state = RunState.fold(e for e in events if e is not None)
    assert state.step("a").status == "succeeded" and state.step("a").output == {"n": 1}
    assert state.step("b").status == "pending"
    assert events[1] is not None and events[1].type is EventType.STEP_SUCCEEDED


def test_a_run_document_parses_its_json_fields() -> None:
    run = run_pb2.Run(
        id="r1",
        status="failed",
        input_json='{"a": 1}',
        error_json='{"kind": "rejected", "message": "no"}',
        steps=[run_pb2.Step(id="a", status="failed", attempt=2, error_json="not json")],
    )
    doc = run_document(run)
    assert doc["input"] == {"a": 1} and doc["output"] is None
    assert doc["error"] == {"kind": "rejected", "message": "no"}
    assert doc["steps"][0]["error"] == "not json" and doc["finished_at"] is None
