"""The consultation thread state machine (SPEC F-20 … F-24). Pure rules, no I/O.

    open ──propose──► resolving ──all approve──► resolved
      ▲                   │
      └──contest (round+1)┘      round > max_rounds ─► max_rounds (forced)
    any active state ──► closed | cancelled | timeout

Who may do what is explicit here, so every transport enforces the same rules:
- anyone registered may post (observers warn and comment);
- participants (initiator + respondents still present) may propose;
- participants other than the proposer approve or contest; consensus is all of them;
- participants may close; only the initiator may cancel;
- anyone may claim an unclaimed thread (work stealing); only the claimer completes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from huddle.errors import Conflict, Forbidden

OPEN = "open"
RESOLVING = "resolving"
RESOLVED = "resolved"
CLOSED = "closed"
CANCELLED = "cancelled"
TIMEOUT = "timeout"
MAX_ROUNDS = "max_rounds"

ACTIVE = frozenset({OPEN, RESOLVING})
TERMINAL = frozenset({RESOLVED, CLOSED, CANCELLED, TIMEOUT, MAX_ROUNDS})
ALL_STATUSES = (OPEN, RESOLVING, RESOLVED, CLOSED, CANCELLED, TIMEOUT, MAX_ROUNDS)
MESSAGE_TYPES = ("context", "question", "warning", "suggestion")


@dataclass(frozen=True)
class ThreadView:
    thread_id: str
    status: str
    round: int
    max_rounds: int
    initiator: str
    respondents: frozenset[str]  # expected respondents still present
    proposer: str | None
    approvals: frozenset[str]  # approvals of the current round's proposal
    claimed_by: str | None

    @property
    def participants(self) -> frozenset[str]:
        return self.respondents | {self.initiator}

    def needed_approvals(self) -> frozenset[str]:
        """Everyone taking part except the proposer, whose proposal counts as their approval."""
        return self.participants - {self.proposer} if self.proposer else self.participants

    def has_consensus(self) -> bool:
        return self.status == RESOLVING and self.needed_approvals() <= self.approvals


def _require_participant(view: ThreadView, agent_id: str, action: str) -> None:
    if agent_id not in view.participants:
        raise Forbidden(
            f"{agent_id} is not a participant of thread {view.thread_id} and cannot {action} it; "
            f"participants are {', '.join(sorted(view.participants))}. Post to the thread instead "
            "(post_to_thread) if you have something to add"
        )


def _require_active(view: ThreadView, action: str) -> None:
    if view.status not in ACTIVE:
        raise Conflict(
            f"thread {view.thread_id} is {view.status}; it can no longer be {action}. "
            "Announce new work (announce_work) if the conflict is back"
        )


def check_post(view: ThreadView) -> None:
    _require_active(view, "posted to")


def check_propose(view: ThreadView, agent_id: str) -> None:
    _require_active(view, "given a proposal")
    _require_participant(view, agent_id, "propose a resolution for")


def check_vote(view: ThreadView, agent_id: str, action: str) -> None:
    """Approve or contest: needs a proposal on the table and a participant who did not make it."""
    _require_participant(view, agent_id, action)
    if view.status != RESOLVING or view.proposer is None:
        raise Conflict(
            f"thread {view.thread_id} is {view.status} with no proposal to {action}; "
            "wait for a proposal (get_thread) or make one (propose_resolution)"
        )
    if agent_id == view.proposer:
        raise Forbidden(
            f"{agent_id} made the current proposal on thread {view.thread_id} and cannot {action} it; "
            "the other participants decide"
        )


def after_contest(view: ThreadView) -> tuple[str, int]:
    """The next (status, round) after a contest; past max_rounds the thread is force-resolved."""
    next_round = view.round + 1
    if next_round > view.max_rounds:
        return MAX_ROUNDS, view.round
    return OPEN, next_round


def check_close(view: ThreadView, agent_id: str) -> None:
    _require_participant(view, agent_id, "close")
    if view.status in (CLOSED, CANCELLED):
        raise Conflict(f"thread {view.thread_id} is already {view.status}")


def check_cancel(view: ThreadView, agent_id: str) -> None:
    if agent_id != view.initiator:
        raise Forbidden(
            f"{agent_id} cannot cancel thread {view.thread_id}: only its initiator {view.initiator} may; "
            "participants may close it (close_thread) once the work is settled"
        )
    _require_active(view, "cancelled")


def check_claim(view: ThreadView, agent_id: str) -> None:
    if view.status in (CLOSED, CANCELLED, TIMEOUT):
        raise Conflict(f"thread {view.thread_id} is {view.status}; there is nothing left to claim")


def check_complete(view: ThreadView, agent_id: str, already_completed: bool) -> None:
    if view.status in (CLOSED, CANCELLED, TIMEOUT):
        raise Conflict(f"thread {view.thread_id} is {view.status}; its claimed work can no longer be completed")
    if already_completed:
        raise Conflict(f"thread {view.thread_id} was already completed; post_to_thread to add to it")
    if view.claimed_by != agent_id:
        holder = view.claimed_by or "nobody"
        raise Forbidden(
            f"thread {view.thread_id} is claimed by {holder}, not {agent_id}; "
            "only the claimer completes it (claim_thread first)"
        )
