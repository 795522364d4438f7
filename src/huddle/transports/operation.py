"""What an operation is: one typed async function, in a toolset, served over MCP and REST.

Its own module so that every catalogue module (tools.py, tools_coordination.py, …) can build
operations without importing the others; tools.py gathers them all in FACTORIES.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic

Result = dict[str, Any]


def between(bounds: tuple[float, float]) -> Any:
    """A numeric argument's bounds, for `Annotated[int, between(SERVICE_RANGE)]`.

    They become the field's `minimum`/`maximum` in the tool schema, which the argument check
    (arguments.py) enforces with one message naming both — the range the service itself checks,
    from the same constant.
    """
    return pydantic.Field(ge=bounds[0], le=bounds[1])


@dataclass(frozen=True)
class Operation:
    name: str
    toolset: str
    fn: Callable[..., Awaitable[Result]]
    read_only: bool = False

    @property
    def description(self) -> str:
        return (self.fn.__doc__ or self.name).strip()
