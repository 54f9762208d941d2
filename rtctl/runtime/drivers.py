"""Driver registry: a driver ``type`` in a config → its config section and how to build the driver.

`rtctl run` accepts every type registered with ``in_run=True`` (its config's ``driver`` section is the
discriminated union of their sections, keyed ``type``); `rtctl deploy` builds its LeRobot robot through
the same table. Bring your own driver: implement the `Driver` protocol (drivers/base.py), give it a config
section with ``type: Literal["my_arm"]``, and call ``register_driver("my_arm", MyArmConfig, build)`` before
the config is loaded; ``build(cfg)`` gets the whole validated run config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Union

from pydantic import Field, create_model

from rtctl.config import ConfigError


@dataclass(frozen=True)
class DriverEntry:
    config: type
    build: Callable[[Any], Any]
    in_run: bool = True


DRIVERS: dict[str, DriverEntry] = {}


def register_driver(name: str, config: type, build: Callable[[Any], Any], in_run: bool = True) -> None:
    DRIVERS[name] = DriverEntry(config, build, in_run)


def make_driver(cfg: Any) -> Any:
    """The driver for a validated config (its ``driver.type`` picks the entry)."""
    entry = DRIVERS.get(cfg.driver.type)
    if entry is None:
        raise ConfigError(f"config error: key 'driver.type' = {cfg.driver.type!r} is not a registered driver "
                          f"(known: {', '.join(sorted(DRIVERS))})")
    return entry.build(cfg)


def run_config_model(base: type) -> type:
    """``base`` (RunConfig) whose ``driver`` section takes every type registered for `rtctl run`."""
    configs = tuple(e.config for e in DRIVERS.values() if e.in_run)
    if len(configs) <= 1:
        return base
    union = Annotated[Union[configs], Field(discriminator="type")]  # type: ignore[valid-type]
    return create_model(base.__name__, __base__=base, driver=(union, base.model_fields["driver"].default))
