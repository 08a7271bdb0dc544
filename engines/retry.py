"""Run an engine on a batch so that one bad item cannot take the others down.

The batch is tried whole first (fast path). If that raises, each item is tried alone,
``retries`` times, so the failing item is isolated and reported while the others still
get results. Used by every actor. (Out-of-memory splitting of a GPU batch is the
generative engines' own: ``engines.generative.generation`` halves the batch instead.)
"""

from __future__ import annotations

import threading
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


class EngineTimeout(TimeoutError):
    """An engine call ran past its time limit; its thread may still be running (the caller must not trust the engine)."""


def with_timeout(
    call: Callable[[Sequence[Item]], Sequence[Result]],
    seconds_per_item: float | None,
    on_timeout: Callable[[], None] = lambda: None,
) -> Callable[[Sequence[Item]], Sequence[Result]]:
    """Wrap ``call`` so it raises ``EngineTimeout`` after ``seconds_per_item * len(items)`` seconds.

    A hung engine cannot be interrupted from Python: the call runs in a daemon thread
    that is abandoned on timeout, and ``on_timeout`` tells the owner (the actor) that
    its engine is no longer trustworthy, so it can replace itself before the next batch.
    """
    if not seconds_per_item:
        return call

    def timed(items: Sequence[Item]) -> Sequence[Result]:
        box: dict[str, object] = {}

        def target() -> None:
            try:
                box["result"] = call(items)
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = error

        thread = threading.Thread(target=target, daemon=True, name="engine-call")
        thread.start()
        limit = seconds_per_item * max(1, len(items))
        thread.join(limit)
        if thread.is_alive():
            on_timeout()
            raise EngineTimeout(f"engine did not answer within {limit:g} s ({seconds_per_item:g} s per item)")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["result"]  # type: ignore[return-value]

    return timed


def run_isolating_failures(
    call: Callable[[Sequence[Item]], Sequence[Result]],
    items: Sequence[Item],
    retries: int = 1,
) -> list[Outcome[Result]]:
    """One Outcome per item, in order: a result, or the failure after ``1 + retries`` attempts.

    A failed batch of several items is not an attempt of each item (only one of them may
    be at fault): each is then tried alone ``1 + retries`` times. A failed batch of one
    item is that item's first attempt.
    """
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
    first_alone = 2 if len(items) == 1 else 1
    for item in items:
        outcome: Outcome[Result] = Outcome(
            failure=Failure(type(first_error).__name__, str(first_error)[:2000], 1), attempts=1
        )
        for attempt in range(first_alone, retries + 2):
            try:
                (result,) = call([item])
                outcome = Outcome(result=result, attempts=attempt)
                break
            except Exception as error:  # noqa: BLE001 - recorded per item
                outcome = Outcome(failure=Failure(type(error).__name__, str(error)[:2000], attempt), attempts=attempt)
        outcomes.append(outcome)
    return outcomes
