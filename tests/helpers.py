"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os


def xcom_return(dag_run, task_id: str, map_index: int = -1):
    """The return value a task pushed in a ``dag.test()`` run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, key="return_value", task_ids=task_id, dag_ids=dag_run.dag_id, map_indexes=map_index
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
