"""Config validation: declarative per-field rules, checked in every config's __post_init__, that raise a one-line
ConfigError naming the CLI flag and the allowed range (`--run.keep-checkpoints must be an integer >= 1, got -1`).

A config declares a table {field (or tuple of fields): rule} and calls `check(self, RULES, home, cross)`:

    _RULES = rules({("batch_size", "group_size"): INT_POS, "gamma": UNIT, "clip_eps": POS})

    def __post_init__(self):
        check(self, _RULES, "algo.", lambda c, flag: [(c.ppo_batch_size <= c.batch_size, "ppo_batch_size",
                                                         f"must be <= {flag('batch_size')} ({c.batch_size})")])

Flag names. Nested configs are built before their parent (by tyro, by `from_dict`, by `replace`), so on its own a
nested config does not know where it sits. `check` therefore also re-checks every nested config with the exact
prefix of the parent (`--algo.policy.denoise-steps`), and builders that assemble a whole tree (the CLI through
`parse_cli`, `config_io.from_dict`) build the nested parts inside `deferred()`, so the first error raised is the
root's, with the full flag. A nested config built alone names its fields under its `home` prefix (`policy.` for
FlowPolicyConfig); a config with no single home (home=None) uses its Python name (`GaussianConfig.log_std_min`).
tyro would otherwise catch the ValueError of a nested config and print a multi-line box naming only its prefix.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from flowft.errors import ConfigError

T = TypeVar("T")
_DEFERRED: ContextVar[bool] = ContextVar("flowft_validation_deferred", default=False)
_PREFIX: ContextVar[str | None] = ContextVar("flowft_validation_prefix", default=None)


@dataclass(frozen=True)
class Rule:
    """An integer or a finite real number in a range (open or closed ends); None only where `none` says what it
    means. `note` explains special values (`0 = off`) in the message."""

    integer: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    none: str | None = None
    note: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            rng = f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            rng = f" {'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            rng = f" {'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            rng = " (finite)"
        extra = [self.note] if self.note else []
        extra += [f"None = {self.none}"] if self.none is not None else []
        return kind + rng + (f" ({'; '.join(extra)})" if extra else "")

    def ok(self, v: Any) -> bool:
        if v is None:
            return self.none is not None
        if isinstance(v, bool) or not isinstance(v, numbers.Integral if self.integer else numbers.Real):
            return False
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))


@dataclass(frozen=True)
class Widths:
    """A tuple of layer widths, each an integer >= 1 (empty = no hidden layer)."""

    def describe(self) -> str:
        return "a tuple of integers >= 1 (layer widths)"

    def ok(self, v: Any) -> bool:
        return isinstance(v, tuple) and all(INT_POS.ok(w) for w in v)


def integer(lo: int | None = None, hi: int | None = None, note: str = "", none: str | None = None) -> Rule:
    return Rule(True, lo, hi, none=none, note=note)


def number(gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
           note: str = "", none: str | None = None) -> Rule:
    lo, hi = (gt if gt is not None else ge), (lt if lt is not None else le)
    return Rule(False, lo, hi, gt is not None, lt is not None, none, note)


INT_POS = integer(1)
"""Counts that must be at least one: batch sizes, group sizes, heads, steps, episodes, intervals."""
INT_NONNEG = integer(0)
POS = number(gt=0)
"""Learning rates, temperatures, clip widths, bounds."""
NONNEG = number(ge=0)
"""Weight decay, coefficients where 0 switches the term off."""
UNIT = number(ge=0, le=1)
"""Probabilities, fractions, discounts (gamma = 0 is myopic but well defined; nothing divides by 1 - gamma)."""
RATE = number(gt=0, le=1)
"""Polyak / EMA rates: 0 would freeze the target network forever."""
FINITE = number()
WIDTHS = Widths()
Rules = dict[str, Any]
LOG_RULES: Rules = {"log_every": INT_POS}
"""LogConfig (utils/logging.py): log_every is a modulus of the step counter, so 0 would divide by zero."""


def rules(table: dict[str | tuple[str, ...], Any]) -> Rules:
    """Expand {("a", "b"): rule, "c": rule} to {"a": rule, "b": rule, "c": rule}."""
    out: Rules = {}
    for names, rule in table.items():
        for name in (names,) if isinstance(names, str) else names:
            out[name] = rule
    return out


def sub_rules(cfg: Any, attr: str, table: Rules) -> list[tuple[bool, str, str]]:
    """Cross-check entries that apply `table` to the nested config `cfg.<attr>` from its parent: for nested
    configs whose class does not check itself (LogConfig lives in utils/logging.py)."""
    sub = getattr(cfg, attr)
    return [(rule.ok(getattr(sub, name)), f"{attr}.{name}", f"must be {rule.describe()}")
            for name, rule in table.items()]


def flag_name(prefix: str | None, cls_name: str, name: str) -> str:
    """The CLI spelling of a field (tyro: dots between levels, dashes for underscores)."""
    if prefix is None:
        return f"{cls_name}.{name}"
    return "--" + (prefix + name).replace("_", "-")


@contextmanager
def deferred() -> Iterator[None]:
    """Skip __post_init__ checks while a whole config tree is being assembled; the caller then validates the
    root (`revalidate`), whose check re-checks every nested config under its full flag name."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def check(cfg: Any, table: Rules, home: str | None = "",
          cross: Callable[[Any, Callable[[str], str]], Iterable[tuple[bool, str, str]]] | None = None) -> None:
    """Validate `cfg` (call from __post_init__): every field of `table`, then `cross(cfg, flag)` ->
    [(ok, field, "must be ... (why)")] for constraints between fields, then every nested config, re-checked
    under this config's prefix. Raises ConfigError for the first violation."""
    if _DEFERRED.get():
        return
    prefix = _PREFIX.get()
    prefix = home if prefix is None else prefix
    flag = lambda name: flag_name(prefix, type(cfg).__name__, name)  # noqa: E731
    for name, rule in table.items():
        value = getattr(cfg, name)
        if not rule.ok(value):
            raise ConfigError(f"{flag(name)} must be {rule.describe()}, got {value!r}")
    for ok, name, text in (cross(cfg, flag) if cross is not None else ()):
        if not ok:
            raise ConfigError(f"{flag(name)} {text}, got {operator.attrgetter(name)(cfg)!r}")
    for f in dataclasses.fields(cfg):
        sub = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sub) and not isinstance(sub, type) and hasattr(sub, "__post_init__"):
            token = _PREFIX.set(f"{prefix or ''}{f.name}.")
            try:
                sub.__post_init__()
            finally:
                _PREFIX.reset(token)


def revalidate(cfg: T) -> T:
    """Check a config built under `deferred()` (or by hand) as a root: every field under its full flag name."""
    token = _PREFIX.set(None)
    try:
        cfg.__post_init__()  # type: ignore[attr-defined]
    finally:
        _PREFIX.reset(token)
    return cfg


def parse_cli(cls: Any, **tyro_kwargs) -> Any:
    """tyro.cli with validation deferred to the whole parsed config, so that a bad value gives one ConfigError
    naming its full flag (tyro would catch a nested config's ValueError and print a box naming only its prefix).
    Nothing has been written when it raises."""
    import tyro

    with deferred():
        cfg = tyro.cli(cls, **tyro_kwargs)
    return revalidate(cfg)
