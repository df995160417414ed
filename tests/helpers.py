"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os


def xcom_return(dag_run, task_id: str, map_index: int = -1):
    """The return value a task pushed in a ``dag.test()`` run."""
    return xcom_value(dag_run, task_id, "return_value", map_index)


def xcom_value(dag_run, task_id: str, key: str, map_index: int = -1):
    """The XCom ``key`` a task pushed in a ``dag.test()`` run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, key=key, task_ids=task_id, dag_ids=dag_run.dag_id, map_indexes=map_index
        )
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def task_states(dag_run) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.state for ti in dag_run.get_task_instances(session=session)}


def get_dag(dag_id: str):
    """A DAG from the test DAGs folder, parsed the way the scheduler parses it."""
    from airflow.dag_processing.dagbag import DagBag

    path = os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], f"{dag_id}.py")
    bag = DagBag(dag_folder=path, known_pools={"default_pool"})
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def digest_text(data: bytes) -> str:
    """What linkai-server's digest engine answers for ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()} bytes:{len(data)}"


class HostileServer:
    """A LinkAI look-alike that misbehaves by file name, on 127.0.0.1: ``nonjson`` in the name gets
    an HTML 200, ``echo`` gets a 400 envelope quoting the request's Authorization header (a server
    that leaks the key back), anything else ``{"text": "fine"}``."""

    def __init__(self) -> None:
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = re.search(rb'filename="([^"]*)"', body)
                name = match.group(1).decode() if match else ""
                if "nonjson" in name:
                    self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                elif "echo" in name:
                    envelope = {
                        "success": False,
                        "code": 400,
                        "message": f"rejected request with header {self.headers.get('Authorization')}",
                        "data": None,
                    }
                    self._send(400, json.dumps(envelope).encode(), "application/json")
                else:
                    self._send(200, b'{"text": "fine"}', "application/json")

            def _send(self, status: int, payload: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def check_ok_rows(rows: list[dict], inputs: dict[str, bytes], dag_id: str | None) -> None:
    """Exactly one ok row per input, its text (digest engine) proving every byte reached the server."""
    assert sorted(r["source_uri"] for r in rows) == sorted(inputs)
    for row in rows:
        data = inputs[row["source_uri"]]
        assert row["status"] == "ok", row
        assert row["text"] == digest_text(data)
        assert row["content_sha256"] == hashlib.sha256(data).hexdigest()
        assert row["source_size_bytes"] == len(data)
        assert row["audio_format"] == row["source_uri"].rsplit(".", 1)[1].lower()
        assert row["error_type"] is None and row["error_code"] is None and row["error_message"] is None
        assert row["attempts"] >= 1 and row["latency_ms"] >= 0
        assert row["dag_id"] == dag_id and row["task_id"] == "transcribe"
