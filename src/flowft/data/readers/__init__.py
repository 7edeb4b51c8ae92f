"""Demo readers: one module per file format (hdf5.py: robomimic-style HDF5, minari.py: Minari datasets on disk),
one interface. `flowft.data.load.load_demos` picks the reader; this module holds what every reader shares: the
options (`ReadOptions`), the reader protocol, and the success rule that turns what an episode stores into its
success flag.

Success rules (`--success-rule`, docs/data.md):
  flag      the episode's success key (`--success-key`, default `success`, then `is_success`): an HDF5 demo attribute,
            or a per-step array (true at any step) in the episode group or its `infos` group
  terminal  the episode's last `dones` (HDF5) / `terminations` (Minari) entry: envs that end episodes on success
  reward    any step's reward >= `--success-reward` (e.g. 0 for the -1/0 sparse reward, 1 for a 0/1 goal reward)
  all       every episode (curated human demos, e.g. robomimic PH)
  auto      HDF5: the flag when the episode stores one, else sparse counts (below). Minari: terminations[-1], or
            the flag, or sparse counts. Sparse counts: every reward a non-negative integer and max(rewards) >= K
            (K = number of Minari desired_goal tasks, else 1). Negative or dense rewards never imply success: such
            episodes count as failures and the reader warns how many had no evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from flowft.errors import ConfigError, DataError

if TYPE_CHECKING:
    from flowft.data.dataset import DemoDataset

SuccessRule = Literal["auto", "flag", "terminal", "reward", "all"]
DEFAULT_FLAG_KEYS = ("success", "is_success")
"""Success keys looked for when --success-key is not given: flowft / robomimic / Minari use `success`,
gymnasium-robotics (Fetch, mazes) `is_success`."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read a demo file (the same options for every format)."""

    obs_keys: tuple[str, ...] = ()
    """Observation keys concatenated in this order (Minari: top-level keys or slash paths). Empty: the file's
    recorded order (HDF5 env_args["obs_keys"]), else the format's default order, with a warning."""
    success_key: str | None = None
    """The success flag's name; None: `success`, then `is_success`."""
    success_rule: SuccessRule = "auto"
    success_reward: float | None = None
    """Threshold of the `reward` rule."""
    only_success: bool = False
    max_episodes: int | None = None
    action_bounds: tuple[np.ndarray, np.ndarray] | None = None
    """(low, high): the task's action box; demos far outside it are refused (readers.common.check_actions)."""

    def __post_init__(self):
        if self.success_rule not in ("auto", "flag", "terminal", "reward", "all"):
            raise ConfigError(f"--success-rule must be one of auto/flag/terminal/reward/all, got {self.success_rule!r}")
        if (self.success_rule == "reward") != (self.success_reward is not None):
            raise ConfigError("--success-reward is needed with --success-rule reward and only with it, got "
                              f"rule {self.success_rule!r} and --success-reward {self.success_reward!r}")
        if self.success_key is not None and not self.success_key.strip():
            raise ConfigError("--success-key must be a non-empty name (None: success, then is_success)")

    @property
    def flag_keys(self) -> tuple[str, ...]:
        return (self.success_key,) if self.success_key else DEFAULT_FLAG_KEYS


class DemoReader(Protocol):
    """One file format. `detect` looks only at a file's top-level keys (cheap); `read` returns the episodes."""

    name: str

    def detect(self, top_level_keys: list[str]) -> bool: ...

    def read(self, path: str | Path, opts: ReadOptions) -> DemoDataset: ...


@dataclass(frozen=True)
class Evidence:
    """What one episode stores about its success, as its reader found it (None = not stored)."""

    rewards: np.ndarray  # [T]
    flag: bool | None = None
    """The success key: the attribute, or any step of the per-step array, true."""
    terminal: bool | None = None
    """The last dones / terminations entry."""
    num_tasks: int = 1
    """K of the sparse-count rule."""
    terminal_in_auto: bool = False
    """Minari: a terminated episode counts as successful under `auto` (task envs end on success)."""


def episode_success(ev: Evidence, opts: ReadOptions, where: str) -> tuple[bool, bool]:
    """(success, decided) of one episode under opts.success_rule; decided is False when `auto` found no evidence
    either way (no flag, no termination, rewards dense or negative) and counted the episode as a failure."""
    rule = opts.success_rule
    if rule == "all":
        return True, True
    if rule == "flag":
        if ev.flag is None:
            raise DataError(f"{where}: no success flag {' or '.join(map(repr, opts.flag_keys))} (an attribute, a "
                            "per-step array, or infos/<key>); name it with --success-key or choose another "
                            "--success-rule")
        return ev.flag, True
    if rule == "terminal":
        if ev.terminal is None:
            raise DataError(f"{where}: --success-rule terminal needs a 'dones' (HDF5) or 'terminations' (Minari) "
                            "array; this episode has none")
        return ev.terminal, True
    if rule == "reward":
        return bool(len(ev.rewards) and ev.rewards.max() >= opts.success_reward), True
    if ev.flag or (ev.terminal_in_auto and ev.terminal):
        return True, True
    if ev.flag is False and not ev.terminal_in_auto:  # HDF5: a stored flag is the answer
        return False, True
    r = ev.rewards
    if len(r) and (r >= 0).all() and np.allclose(r, np.round(r)):
        return bool(r.max() >= ev.num_tasks), True
    return False, ev.flag is not None


def describe_rule(opts: ReadOptions, fmt: str) -> str:
    """The rule in words, recorded as env_meta["success_rule"] (and named by the 'no successful episodes' error)."""
    keys = "/".join(opts.flag_keys)
    return {
        "all": "all (every episode)",
        "flag": f"flag ({keys})",
        "terminal": "terminal (last " + ("terminations" if fmt == "minari" else "dones") + " entry)",
        "reward": f"reward (any reward >= {opts.success_reward:g})" if opts.success_reward is not None else "reward",
        "auto": (f"auto: terminations[-1], or any({keys}), or sparse non-negative integer rewards with "
                 "max(rewards) >= K (K = number of desired_goal tasks, else 1)") if fmt == "minari" else
                (f"auto: the episode's {keys} flag, else sparse non-negative integer rewards with max(rewards) >= 1"),
    }[opts.success_rule]


def warn_undecided(where, undecided: int, total: int) -> None:
    """One warning for the episodes `auto` could not judge (counted as failures)."""
    if undecided:
        import warnings

        warnings.warn(f"{where}: {undecided} of {total} episodes store no success flag, did not terminate on success "
                      "and have dense or negative rewards: --success-rule auto counts them as failures; choose "
                      "flag/terminal/reward/all (docs/data.md)", DemoWarning, stacklevel=3)


class DemoWarning(UserWarning):
    """A demo file was read with a guess that may be wrong (obs key order, success)."""
