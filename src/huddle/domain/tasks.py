"""Task board rules (SPEC F-50 … F-53): statuses, transitions and the dependency graph. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from huddle.errors import Conflict

PENDING = "pending"  # waiting to be claimed (available once every dependency is done)
CLAIMED = "claimed"
IN_PROGRESS = "in_progress"
DONE = "done"
FAILED = "failed"
STATUSES = (PENDING, CLAIMED, IN_PROGRESS, DONE, FAILED)
UPDATE_STATUSES = (IN_PROGRESS, DONE, FAILED)
UNFINISHED = (CLAIMED, IN_PROGRESS)


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path `[a, b, …, a]`, or None. `edges[t]` are what t depends on.

    Iterative depth-first search with colours, so a 10,000-task chain cannot hit the recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    for root in edges:
        if colour.get(root, white) != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, index = stack[-1]
            deps = edges.get(node, ())
            if index < len(deps):
                stack[-1] = (node, index + 1)
                nxt = deps[index]
                state = colour.get(nxt, white)
                if state == grey:
                    return [*path[path.index(nxt) :], nxt]
                if state == white and nxt in edges:
                    colour[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def topological(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """The keys of an acyclic `edges` with every task after the tasks (among the keys) it depends on."""
    done: set[str] = set()
    order: list[str] = []
    for root in edges:
        stack = [(root, iter(edges[root]))]
        if root in done:
            continue
        done.add(root)
        while stack:
            node, deps = stack[-1]
            for dep in deps:
                if dep in edges and dep not in done:
                    done.add(dep)
                    stack.append((dep, iter(edges[dep])))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def check_update(task_id: str, status: str, new_status: str) -> None:
    """Raises Conflict when the claimer may not move the task from `status` to `new_status`."""
    if status in UNFINISHED and new_status in UPDATE_STATUSES:
        return
    if status == DONE:
        raise Conflict(f"task {task_id} is already done; done is final — add a follow-up task instead", field="status")
    if status == FAILED:
        raise Conflict(
            f"task {task_id} has failed; call reset_task to make it available again, then claim it", field="status"
        )
    raise Conflict(f"task {task_id} is {status}; claim it (claim_task) before updating it", field="status")


def unknown(ids: Iterable[str], known: Iterable[str]) -> list[str]:
    have = set(known)
    return sorted({i for i in ids if i not in have})
