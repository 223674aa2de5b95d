"""The decisions of a status poll, as plain functions over snapshots (slurmlink/api/pollchanges.py).

The two races of tests/unit/test_poller_race.py (there ordered with scheduler stand-ins) are here the inputs
that caused them: a pod that entered the registry after the job list was asked for, and an adopted pod whose
records have not been read yet.
"""

from __future__ import annotations

from slurmlink.api.pollchanges import (
    DELETED_RETENTION_SECONDS,
    Changes,
    adoption_candidates,
    decide_adoption,
    decide_changes,
    owners_to_ask,
    read_listing,
    records_to_read,
)
from slurmlink.api.registry import PodEntry
from slurmlink.slurm.base import ContainerRecord, JobInfo

SNAPSHOT = 100.0  # when the poll asked for the job list (monotonic)


def workdir_for(namespace: str, uid: str) -> str:
    return f"/jobs/{namespace}-{uid}"


def job(job_id: str, uid: str, state: str = "RUNNING", user: str = "alice", workdir: str = "") -> JobInfo:
    return JobInfo(job_id=job_id, name=f"slurmlink-{uid}", user=user, state=state,
                   workdir=workdir or workdir_for("ns", uid), comment=f"ns/pod-{uid}")


def entry(uid: str, job_id: str, created: float = 50.0, **extra: object) -> PodEntry:
    return PodEntry(uid=uid, namespace="ns", name=f"pod-{uid}", user="alice", workdir=workdir_for("ns", uid),
                    job_id=job_id, created=created, **extra)  # type: ignore[arg-type]


def ended(code: int | None = 0) -> dict[str, ContainerRecord]:
    return {"main": ContainerRecord(name="main", exit_code=code)}


def poll(pool: list[PodEntry], jobs: list[JobInfo], *, accounting: dict[str, JobInfo] | None = None,
         records: dict[str, dict[str, ContainerRecord]] | None = None, adopted: dict[str, PodEntry] | None = None,
         known: dict[str, PodEntry] | None = None, now: float = SNAPSHOT + 1, blind: frozenset[str] = frozenset(),
         ) -> tuple[list[str], list[str], Changes]:
    """One poll's decisions, as poller.poll_once chains them: (uids asked of accounting, uids whose records
    were wanted, the changes). `records` by job id: what reading them found (a wanted pod left out: unreadable)."""
    adopted = adopted or {}
    listing = read_listing([*pool, *adopted.values()], jobs, SNAPSHOT, blind)
    seen = listing.with_accounting(accounting or {})
    wanted = records_to_read([*pool, *adopted.values()], seen)
    changes = decide_changes([*pool, *adopted.values()], seen, wanted, records or {}, adopted,
                             {e.uid: e for e in pool} if known is None else known, now)
    return [e.uid for e in listing.missing], [e.uid for e in wanted], changes


# --- a pod whose job was submitted while the job list was being taken ----------------------------------------

def test_a_pod_created_after_the_list_was_asked_for_is_not_judged_by_it() -> None:
    late = entry("u-1", "7", created=SNAPSHOT + 0.01)  # its submission returned while the list was on its way
    asked, wanted, changes = poll([late], jobs=[])
    assert (asked, wanted, changes) == ([], [], Changes({}, [], {}))


def test_a_pod_created_before_the_list_and_missing_from_it_is_asked_of_accounting() -> None:
    gone = entry("u-1", "7", job=job("7", "u-1"))
    asked, wanted, changes = poll([gone], jobs=[], accounting={"7": job("7", "u-1", "COMPLETED")},
                                  records={"7": ended(0)})
    assert asked == ["u-1"] and wanted == ["u-1"]
    update = changes.updates["u-1"]
    assert (update.job.state, update.records, update.records_final) == ("COMPLETED", ended(0), True)


def test_the_jobs_of_users_the_list_cannot_show_are_not_missing() -> None:
    hidden = entry("u-1", "7", job=job("7", "u-1"))
    asked, _, changes = poll([hidden], jobs=[], blind=frozenset({"alice"}))
    assert asked == [] and changes.updates == {}


def test_rejected_and_jobless_pods_are_not_judged() -> None:
    pool = [entry("u-1", "", rejected=("SlurmRejected", "no")), entry("u-2", "")]
    assert poll(pool, jobs=[job("7", "u-1")]) == ([], [], Changes({}, [], {}))


def test_a_job_listed_by_id_only() -> None:
    """Anyone can name a job like ours: a listed job counts for a pod only under the pod's job id."""
    mine = entry("u-1", "7", job=job("7", "u-1"))
    asked, _, _ = poll([mine], jobs=[job("8", "u-1", user="mallory")])
    assert asked == ["u-1"]


# --- records: read while a job runs, once after it ended, together with its state ----------------------------

def test_records_are_not_read_for_pending_jobs_nor_after_the_final_read() -> None:
    pending = entry("u-1", "7")
    final = entry("u-2", "8", job=job("8", "u-2", "COMPLETED"), records=ended(0), records_final=True)
    _, wanted, changes = poll([pending, final], jobs=[job("7", "u-1", "PENDING"), job("8", "u-2", "COMPLETED")])
    assert wanted == []
    assert list(changes.updates) == ["u-1"] and changes.updates["u-1"].records is None


def test_a_finished_job_is_final_only_with_records_read_after_it_ended() -> None:
    running = entry("u-1", "7", job=job("7", "u-1"), records=ended(None))
    _, wanted, changes = poll([running], jobs=[job("7", "u-1", "COMPLETED")], records={"7": ended(0)})
    assert wanted == ["u-1"]
    update = changes.updates["u-1"]
    assert (update.job.state, update.records, update.records_final) == ("COMPLETED", ended(0), True)

    _, _, unread = poll([running], jobs=[job("7", "u-1", "COMPLETED")], records={})
    assert unread.updates["u-1"].records is None and not unread.updates["u-1"].records_final


def test_a_pod_whose_job_slurm_forgot_keeps_its_state_until_its_records_can_be_read() -> None:
    gone = entry("u-1", "7", job=job("7", "u-1"), records=ended(None))
    assert poll([gone], jobs=[], records={})[2].updates == {}


def test_a_job_slurm_forgot_ends_as_its_records_say() -> None:
    gone = entry("u-1", "7", job=job("7", "u-1"))
    assert poll([gone], jobs=[], records={"7": ended(0)})[2].updates["u-1"].job.state == "COMPLETED"
    assert poll([gone], jobs=[], records={"7": ended(3)})[2].updates["u-1"].job.state == "FAILED"
    lost = poll([gone], jobs=[], records={"7": {}})[2].updates["u-1"].job
    assert lost.state == "FAILED" and "no longer known to SLURM" in lost.reason


def test_a_pod_that_did_not_change_is_not_updated() -> None:
    same = entry("u-1", "7", job=job("7", "u-1"), records=ended(None))
    assert poll([same], jobs=[job("7", "u-1")], records={"7": ended(None)})[2].updates == {}


# --- adoption after a restart ---------------------------------------------------------------------------------

def test_an_adopted_pod_joins_only_with_its_job_and_records_at_once() -> None:
    finished = job("8", "u-2", "COMPLETED")
    adoption = decide_adoption(adoption_candidates([finished], [], set(), workdir_for), {"8": "alice"}, {})
    assert list(adoption.adopt) == ["u-2"] and adoption.adopt["u-2"].job is None

    # Its records cannot be read yet: it does not join (a status meanwhile would show a made-up Failed).
    _, wanted, changes = poll([], jobs=[finished], adopted=adoption.adopt, records={})
    assert wanted == ["u-2"] and changes.join == [] and changes.updates == {}

    _, _, changes = poll([], jobs=[finished], adopted=adoption.adopt, records={"8": ended(0)})
    [joined] = changes.join
    assert (joined.uid, joined.namespace, joined.name, joined.workdir) == ("u-2", "ns", "pod-u-2", "/jobs/ns-u-2")
    assert (joined.job, joined.records, joined.records_final) == (finished, ended(0), True)
    assert changes.updates == {}  # adopted pods are not the registry's yet: nothing to update in place


def test_an_adopted_pending_job_joins_without_records() -> None:
    pending = job("8", "u-2", "PENDING")
    adopt = decide_adoption(adoption_candidates([pending], [], set(), workdir_for), {"8": "alice"}, {}).adopt
    [joined] = poll([], jobs=[pending], adopted=adopt)[2].join
    assert joined.job == pending and joined.records == {}


def test_a_pod_created_during_the_poll_is_not_replaced_by_its_adoption() -> None:
    listed = job("8", "u-2")
    adopt = decide_adoption(adoption_candidates([listed], [], set(), workdir_for), {"8": "alice"}, {}).adopt
    created = entry("u-2", "8", created=SNAPSHOT + 1)
    assert poll([], jobs=[listed], adopted=adopt, known={"u-2": created}, records={"8": {}})[2].join == []


def test_jobs_named_like_ours_are_adopted_only_when_their_user_owns_the_pods_directory() -> None:
    impostor, elsewhere = job("8", "u-2", user="mallory"), job("9", "u-3", workdir="/tmp/x")
    candidates = adoption_candidates([impostor, elsewhere], [], set(), workdir_for)
    assert [c.job for c in owners_to_ask(candidates, {})] == [impostor]  # the other is not even looked at
    adoption = decide_adoption(candidates, {"8": "alice"}, {})
    assert adoption.adopt == {} and adoption.refuse == {"8", "9"} and adoption.impostors == [impostor, elsewhere]


def test_a_job_whose_directory_cannot_be_checked_now_is_asked_again_later() -> None:
    candidates = adoption_candidates([job("8", "u-2")], [], set(), workdir_for)
    adoption = decide_adoption(candidates, {}, {})
    assert (adoption.adopt, adoption.refuse, adoption.impostors) == ({}, set(), [])


def test_the_oldest_job_of_a_pod_is_its_own_and_copies_are_refused() -> None:
    copy, original = job("10", "u-2"), job("9", "u-2")  # by number, not by text: 9 was submitted first
    candidates = adoption_candidates([copy, original], [], set(), workdir_for)
    adoption = decide_adoption(candidates, {"9": "alice", "10": "alice"}, {})
    assert adoption.adopt["u-2"].job_id == "9" and adoption.refuse == {"10"}


def test_known_and_refused_jobs_are_no_candidates_and_a_known_pods_copy_is_refused_unasked() -> None:
    known = entry("u-1", "7")
    jobs = [job("7", "u-1"), job("8", "u-1"), job("9", "u-9")]
    candidates = adoption_candidates(jobs, [known], {"9"}, workdir_for)
    assert [c.job.job_id for c in candidates] == ["8"] and owners_to_ask(candidates, {"u-1": known}) == []
    assert decide_adoption(candidates, {}, {"u-1": known}).refuse == {"8"}


# --- deleted pods: kept a while once finished, then forgotten -------------------------------------------------

def test_a_deleted_pod_is_kept_a_while_after_its_end_then_forgotten() -> None:
    deleted = entry("u-1", "7", job=job("7", "u-1"), deleting=True)
    changes = poll([deleted], jobs=[job("7", "u-1", "CANCELLED")], records={"7": ended(143)}, now=200.0)[2]
    assert changes.updates["u-1"].forget_after == 200.0 + DELETED_RETENTION_SECONDS and changes.forget == {}

    kept = entry("u-1", "7", job=job("7", "u-1", "CANCELLED"), records=ended(143), records_final=True,
                 deleting=True, forget_after=800.0)
    assert poll([kept], jobs=[job("7", "u-1", "CANCELLED")], now=799.0)[2].forget == {}
    assert poll([kept], jobs=[job("7", "u-1", "CANCELLED")], now=801.0)[2].forget == {"u-1": "7"}


def test_a_deleted_pod_is_not_forgotten_before_its_final_records() -> None:
    deleted = entry("u-1", "7", job=job("7", "u-1"), deleting=True)
    changes = poll([deleted], jobs=[job("7", "u-1", "CANCELLED")], records={}, now=200.0)[2]
    assert changes.updates["u-1"].forget_after == 0.0
