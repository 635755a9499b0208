"""The promotion gate's trigger: waits on the model registry without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlflow.exceptions import MLflowProviderError


class MLflowMetricThresholdTrigger(BaseTrigger):
    """
    Polls the promotion gate until the candidate's metrics give a final verdict.

    Reads MLflow with the connection's credentials bound to its own client (the triggerer's
    environment is never touched), in a thread so the event loop stays free.

    :param gate: what the gate decides on, :meth:`GateSpec.to_json() <airflow_mlflow.gate.GateSpec.to_json>`
        (model, thresholds, candidate version / alias / stage, baseline)
    :param mlflow_conn_id: the ``mlflow`` connection
    :param poll_interval: seconds between polls
    :param deadline: when to stop waiting, as a UTC epoch timestamp in seconds (the sensor's
        ``timeout`` from when it deferred): the trigger then sends a ``timeout`` event itself, so
        the wait ends in every runner, including ``airflow dags test``'s inline one, which ignores
        the deferral's timeout
    """

    def __init__(
        self,
        *,
        gate: Mapping[str, Any],
        mlflow_conn_id: str = "mlflow_default",
        poll_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        from airflow_mlflow.gate import GateSpec

        super().__init__()
        self.gate = GateSpec.from_json(gate)
        self.mlflow_conn_id = mlflow_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)

    @property
    def model_name(self) -> str:
        return self.gate.model_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "gate": self.gate.to_json(),
                "mlflow_conn_id": self.mlflow_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def _hook(self):
        from airflow_mlflow.hooks.mlflow import MLflowHook

        hook = MLflowHook(mlflow_conn_id=self.mlflow_conn_id)
        await asyncio.to_thread(lambda: hook.config)  # the hook layer's one resolution, off the loop
        return hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlflow.gate import WAITING, Gate

        try:
            # One Gate for every poll: a pinned candidate version is looked up once, and while its
            # metrics are missing a poll is one request (the candidate's run).
            gate = Gate(await self._hook(), self.gate)
            verdict, unreachable = None, False
            while True:
                try:
                    verdict = await asyncio.to_thread(gate.poll)
                except MLflowProviderError as err:
                    if not _is_outage(err):
                        raise
                    # MLflow down or failing: a waiting gate goes on waiting, until its deadline.
                    if not unreachable:
                        self.log.warning(
                            "Gate for %s: MLflow unreachable (%s); still waiting", self.model_name, err
                        )
                    unreachable = True
                else:
                    if unreachable:
                        self.log.info("Gate for %s: MLflow answers again", self.model_name)
                    unreachable = False
                    if verdict.status != WAITING:
                        yield TriggerEvent({"status": "done", "verdict": verdict.to_json()})
                        return
                left = None if self.deadline is None else self.deadline - time.time()
                if left is not None and left <= 0:
                    last = verdict.to_json() if verdict is not None else None
                    yield TriggerEvent({"status": "timeout", "verdict": last})
                    return
                if verdict is not None and not unreachable:
                    self.log.info("Gate for %s still waiting: %s", self.model_name, verdict.report())
                await asyncio.sleep(self.poll_interval if left is None else min(self.poll_interval, left))
        except Exception as err:  # a trigger must report, not crash the triggerer's loop
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})


def _is_outage(err: MLflowProviderError) -> bool:
    """MLflow failed on its side (5xx, refused, timed out): worth waiting through, unlike the
    errors a retry cannot fix (they fail the task at once) or an unreadable connection."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlflow.exceptions import MLflowConnectionLookupError

    return not isinstance(err, (AirflowFailException, MLflowConnectionLookupError))
