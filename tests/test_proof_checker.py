"""The linearizability checker and the Huddle models it checks against (benchmarks/proof/).

Hand-written histories with a known answer, then the planted bug: a lease table with a
check-then-act race, driven by concurrent clients, whose double grants the checker must report
with the minimal offending ops — and whose race-free twin it must accept.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "proof"))

from linearizability import INF, Op, check, check_key, witness
from models import ClaimModel, LeaseModel, early_takeovers
from planted import record_history


def history(*rows: tuple[str, str, dict[str, Any], float, float, dict[str, Any]], key: str = "lease:x") -> list[Op]:
    """Rows of (process, f, args, invoke, complete, result); complete None = no answer came."""
    return [
        Op(i, p, key, f, args, inv, INF if done is None else done, "info" if done is None else "ok", res)
        for i, (p, f, args, inv, done, res) in enumerate(rows)
    ]


def ex(agent: str, ttl: float = 10.0, mode: str = "exclusive") -> dict[str, Any]:
    return {"agent": agent, "mode": mode, "ttl": ttl}


def linearizable(ops: list[Op], model: Any = None) -> bool:
    return check_key(model or LeaseModel(), ops[0].key, ops).ok


def test_a_grant_release_grant_sequence_is_linearizable() -> None:
    ops = history(
        ("a", "acquire", ex("a"), 0, 1, {"granted": True, "fencing_token": 1}),
        ("a", "release", {"agent": "a"}, 2, 3, {"released": True, "fencing_token": 1}),
        ("b", "acquire", ex("b"), 4, 5, {"granted": True, "fencing_token": 2}),
    )
    assert linearizable(ops)


def test_two_exclusive_grants_without_a_release_between_are_a_violation() -> None:
    ops = history(
        ("a", "acquire", ex("a"), 0, 1, {"granted": True, "fencing_token": 1}),
        ("b", "acquire", ex("b"), 2, 3, {"granted": True, "fencing_token": 2}),
    )
    assert not linearizable(ops)


def test_a_takeover_is_legal_only_once_the_ttl_has_run_out() -> None:
    first = ("a", "acquire", ex("a", ttl=10), 0, 1, {"granted": True, "fencing_token": 1})
    assert linearizable(history(first, ("b", "acquire", ex("b"), 11, 12, {"granted": True, "fencing_token": 2})))
    assert not linearizable(history(first, ("b", "acquire", ex("b"), 5, 6, {"granted": True, "fencing_token": 2})))
    # A refusal after the lease surely ended is wrong too: nobody holds it any more.
    assert not linearizable(history(first, ("b", "acquire", ex("b"), 20, 21, {"granted": False})))


def test_shared_leases_coexist_and_an_exclusive_one_waits_for_both() -> None:
    ops = history(
        ("a", "acquire", ex("a", mode="shared"), 0, 1, {"granted": True, "fencing_token": 1}),
        ("b", "acquire", ex("b", mode="shared"), 0, 1, {"granted": True, "fencing_token": 2}),
        ("c", "acquire", ex("c"), 2, 3, {"granted": False}),
        ("c", "acquire", ex("c", mode="intent"), 4, 5, {"granted": True, "fencing_token": 3}),
    )
    assert linearizable(ops)


def test_fencing_tokens_must_increase_and_a_renewal_keeps_its_token() -> None:
    first = ("a", "acquire", ex("a"), 0, 1, {"granted": True, "fencing_token": 5})
    renewal = ("a", "renew", {"agent": "a", "ttl": None}, 2, 3, {"renewed": True, "fencing_token": 5})
    assert linearizable(history(first, renewal))
    bad_renewal = ("a", "renew", {"agent": "a", "ttl": None}, 2, 3, {"renewed": True, "fencing_token": 6})
    assert not linearizable(history(first, bad_renewal))
    release = ("a", "release", {"agent": "a"}, 2, 3, {"released": True, "fencing_token": 5})
    lower = ("b", "acquire", ex("b"), 4, 5, {"granted": True, "fencing_token": 4})
    assert not linearizable(history(first, release, lower))


def test_an_unanswered_call_may_or_may_not_have_taken_effect() -> None:
    lost = ("a", "acquire", ex("a"), 0, None, {})
    # It may never have happened: b's grant right after is fine…
    assert linearizable(history(lost, ("b", "acquire", ex("b"), 1, 2, {"granted": True, "fencing_token": 2})))
    # …or it may have: a refusal naming nobody else is explained by it.
    assert linearizable(history(lost, ("b", "acquire", ex("b"), 1, 2, {"granted": False})))


def test_concurrent_calls_may_take_effect_in_either_order() -> None:
    ops = history(
        ("a", "acquire", ex("a"), 0, 10, {"granted": False}),
        ("b", "acquire", ex("b"), 1, 2, {"granted": True, "fencing_token": 1}),
    )
    assert linearizable(ops)
    sequential = history(
        ("a", "acquire", ex("a"), 0, 0.5, {"granted": False}),
        ("b", "acquire", ex("b"), 1, 2, {"granted": True, "fencing_token": 1}),
    )
    assert not linearizable(sequential)


def test_a_task_is_claimed_once_and_moved_on_only_by_its_claimer() -> None:
    def claim(agent: str, t: float, result: dict[str, Any]) -> tuple[Any, ...]:
        return (agent, "claim", {"agent": agent}, t, t + 1, result)

    def update(agent: str, t: float, status: str, result: dict[str, Any]) -> tuple[Any, ...]:
        return (agent, "update", {"agent": agent, "status": status}, t, t + 1, result)

    good = history(
        claim("a", 0, {"claimed": True}),
        claim("b", 2, {"claimed": False}),
        update("b", 4, "done", {"refused": True}),
        update("a", 6, "done", {"updated": True}),
        key="task:t1",
    )
    assert linearizable(good, ClaimModel())
    double = history(claim("a", 0, {"claimed": True}), claim("b", 2, {"claimed": True}), key="task:t1")
    assert not linearizable(double, ClaimModel())
    stolen = history(claim("a", 0, {"claimed": True}), update("b", 2, "done", {"updated": True}), key="task:t1")
    assert not linearizable(stolen, ClaimModel())


def test_a_takeover_before_the_ttl_is_found_straight_from_the_history() -> None:
    ops = history(
        ("a", "acquire", ex("a", ttl=10), 0, 1, {"granted": True, "fencing_token": 1}),
        ("b", "acquire", ex("b", ttl=10), 5, 6, {"granted": True, "fencing_token": 2}),
        ("c", "acquire", ex("c", ttl=10), 17, 18, {"granted": True, "fencing_token": 3}),
    )
    checked, broken = early_takeovers(ops)
    assert checked == 3
    assert [(a.process, b.process) for a, b in broken] == [("a", "b")]
    # A renewal with a shorter ttl_s shortens the lease: the takeover at 5 s is then on time.
    shortened = history(
        ("a", "acquire", ex("a", ttl=10), 0, 1, {"granted": True, "fencing_token": 1}),
        ("a", "renew", {"agent": "a", "ttl": 2.0}, 1, 2, {"renewed": True, "fencing_token": 1}),
        ("b", "acquire", ex("b", ttl=10), 5, 6, {"granted": True, "fencing_token": 2}),
    )
    assert early_takeovers(shortened) == (1, [])
    assert linearizable(shortened)


def test_the_planted_double_grant_is_caught_with_the_two_offending_grants() -> None:
    caught = 0
    for seed in range(5):
        ops = asyncio.run(record_history(racy=True, seed=seed))
        bad = [v for v in check(LeaseModel(), ops) if not v.ok]
        if not bad:
            continue
        caught += 1
        verdict = bad[0]
        part = [o for o in ops if o.key == verdict.key]
        minimal = witness(LeaseModel(), verdict.key, part, verdict)
        # The minimal offending ops: two grants to different agents in conflicting modes.
        assert len(minimal) == 2
        assert all(o.f == "acquire" and o.result["granted"] for o in minimal)
        assert len({o.process for o in minimal}) == 2
        assert "exclusive" in {o.args["mode"] for o in minimal}
        assert not check_key(LeaseModel(), verdict.key, minimal).ok
    assert caught == 5


def test_the_same_table_without_the_race_is_accepted() -> None:
    for seed in range(5):
        ops = asyncio.run(record_history(racy=False, seed=seed))
        assert all(v.ok for v in check(LeaseModel(), ops))


def test_an_unanswered_call_takes_effect_before_the_server_that_got_it_is_killed_or_never() -> None:
    from histories import bound_by_faults

    # a's acquire (TTL 1) got no answer; the server was killed at 5 and was back at 7. At 12, b is
    # refused though nobody else asked: only a grant to a after 11 could explain it.
    ops = history(
        ("a", "acquire", ex("a", ttl=1), 1, None, {}),
        ("b", "acquire", ex("b"), 12, 13, {"granted": False}),
        ("c", "acquire", ex("c"), 30, None, {}),  # sent after the restart: no bound
    )
    faults = [{"fault": "pause-server", "at": 2, "lasted_s": 1}, {"fault": "kill-server", "at": 5, "lasted_s": 2}]
    bounded = bound_by_faults(ops, faults)
    assert [op.complete for op in bounded] == [7, 13, INF]
    assert linearizable(ops)  # unbounded, a's grant may land at 11.5
    assert not linearizable(bounded)  # but the process that got it was gone by 7


def test_a_recheck_names_the_keys_a_kept_history_holds_and_refuses_any_other(tmp_path: Path) -> None:
    import json
    import subprocess

    calls = [
        {"process": "a", "key": "lease:x", "f": "acquire", "args": ex("a"), "invoke": 1.0, "complete": 2.0,
         "type": "ok", "result": {"granted": True, "fencing_token": 1}},
    ]  # fmt: skip
    (tmp_path / "worker0.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "proof" / "histories.py"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), "--recheck", *args], capture_output=True, text=True)

    wrong = run(str(tmp_path), "--key", "x")
    assert wrong.returncode == 2 and "its keys: lease:x" in wrong.stderr
    empty = run(str(tmp_path / "nowhere"))
    assert empty.returncode == 2 and "no worker*.jsonl" in empty.stderr
    right = run(str(tmp_path), "--key", "lease:x")
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["keys_checked"] == 1
    assert json.loads(right.stdout)["faults_applied"] is False and "without the fault bound" in right.stderr
