"""Episode progress of the demo generators: `flowft demos` opens a bar, a generator ticks it once per episode.

The tick travels in a context variable rather than as a generator argument because `TaskSpec.generate` has a fixed
signature, (n, seed, action_noise[, style]), that user generators implement: the built-in generators and
`envs/own.expert_demos` call `episode_done` and need no new parameter, and a user generator that never calls it
still works (its bar is filled when it returns). Outside `demo_bar` a tick does nothing.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

_TICK: ContextVar[Callable[[dict], None] | None] = ContextVar("flowft_demo_tick", default=None)


def episode_done(episode: dict) -> None:
    """Count one finished episode (a dict of the flowft episode format) on the open demo bar, if any."""
    tick = _TICK.get()
    if tick is not None:
        tick(episode)


@contextmanager
def demo_bar(total: int, desc: str, enabled: bool = True) -> Iterator[None]:
    """A tqdm bar over `total` episodes with ETA and the running expert success count, on stderr (stdout keeps only
    the command's result line). Like the BC and evaluation bars it is shown on a terminal only (disable=None) and
    removed when done (leave=False): the caller prints the result line in its place."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="ep", file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=None if enabled else True)
    successes = 0

    def tick(episode: dict) -> None:
        nonlocal successes
        successes += bool(episode.get("success", False))
        bar.set_postfix_str(f"expert success {successes}/{bar.n + 1}", refresh=False)
        bar.update(1)

    token = _TICK.set(tick)
    try:
        yield
        if bar.n < total:  # a generator that does not tick: its episodes are done now
            bar.update(total - bar.n)
    finally:
        _TICK.reset(token)
        bar.close()
