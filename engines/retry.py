"""Run an engine on a batch so that one bad item cannot take the others down.

The batch is tried whole first (fast path). If that raises, each item is tried alone,
``retries`` times, so the failing item is isolated and reported while the others still
get results. Used by every actor; later engines reuse it for out-of-memory splitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class Failure:
    kind: str
    message: str
    attempts: int


@dataclass
class Outcome(Generic[Result]):
    result: Result | None = None
    failure: Failure | None = None
    attempts: int = 1


def run_isolating_failures(
    call: Callable[[Sequence[Item]], Sequence[Result]],
    items: Sequence[Item],
    retries: int = 1,
) -> list[Outcome[Result]]:
    """One Outcome per item, in order: a result, or the failure after ``1 + retries`` attempts."""
    if not items:
        return []
    try:
        results = list(call(items))
        if len(results) != len(items):
            raise RuntimeError(f"engine returned {len(results)} results for {len(items)} inputs")
        return [Outcome(result=r) for r in results]
    except Exception as batch_error:  # noqa: BLE001 - isolate below
        first_error = batch_error
    outcomes = []
    for item in items:
        outcome: Outcome[Result] = Outcome(
            failure=Failure(type(first_error).__name__, str(first_error)[:2000], 1), attempts=1
        )
        for attempt in range(2, retries + 2):
            try:
                (result,) = call([item])
                outcome = Outcome(result=result, attempts=attempt)
                break
            except Exception as error:  # noqa: BLE001 - recorded per item
                outcome = Outcome(failure=Failure(type(error).__name__, str(error)[:2000], attempt), attempts=attempt)
        outcomes.append(outcome)
    return outcomes
