"""The example sharded DAG through ``dag.test()`` in an Airflow home of its own (bench scenario
``sharded``). Usage: ``python -m bench.sharded_dag AUDIO_FOLDER HOME SHARDS``, with
``AIRFLOW_CONN_LINKAI_DEFAULT`` pointing at the server. Prints one JSON line starting ``{"bench"``:
wall time of the run, each task's time, the bytes of every XCom the run left in the metadata DB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    audio, home, shards = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "LINKAI_TRANSCRIPTS_URL": f"file://{home}/transcripts",
            "AIRFLOW_VAR_LINKAI_AUDIO_URL": f"file://{audio}",
            "LINKAI_TASK_RETRIES": "0",
        }
    )
    shutil.copy(ROOT / "dags" / "linkai_sharded_transcription.py", home / "dags")
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())

    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=str(home / "dags"), known_pools={"default_pool"})
    dag = bag.dags["linkai_sharded_transcription"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 28, tz="UTC"), run_conf={"shards": shards})
    wall = time.perf_counter() - t0
    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id
            )
        ).all()
        tis = run.get_task_instances(session=session)
        task_s: dict[str, float] = {}
        for ti in tis:
            if ti.start_date and ti.end_date:
                task_s[ti.task_id] = task_s.get(ti.task_id, 0.0) + (ti.end_date - ti.start_date).total_seconds()
        states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis}
    sizes = {f"{t}[{m}].{k}": len(json.dumps(v).encode()) for t, m, k, v in rows}
    listing = next(v for t, m, k, v in rows if t == "list_shards" and k == "listing")
    report = next(v for t, m, k, v in rows if t == "report" and k == "return_value")
    print(
        json.dumps(
            {
                "bench": "sharded",
                "state": str(run.state),
                "wall_s": wall,
                "task_s": task_s,
                "xcom_bytes": sum(sizes.values()),
                "xcom_rows": len(sizes),
                "xcom_largest": max(sizes.items(), key=lambda kv: kv[1]),
                "manifest_bytes": listing["bytes"],
                "listing": listing,
                "report": report,
                "states_not_success": {k: v for k, v in states.items() if v != "success"},
                "loadavg_1m_before": load,
            }
        )
    )


if __name__ == "__main__":
    main()
